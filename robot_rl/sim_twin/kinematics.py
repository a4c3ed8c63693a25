"""Inverse kinematics of sites on the twin's model (a scratch MjData: the scene is never touched).

Damped least squares on the site Jacobian; used by the scripted experts to turn fingertip or hook
positions into joint targets, with the MJCF as the only source of geometry.
"""

from __future__ import annotations

import mujoco
import numpy as np


class SiteIK:
    def __init__(self, model: mujoco.MjModel, joint_names: tuple[str, ...]) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        ids = [model.joint(n).id for n in joint_names]
        self.qpos = np.array([model.jnt_qposadr[i] for i in ids])
        self.dof = np.array([model.jnt_dofadr[i] for i in ids])
        self.lower = model.jnt_range[ids, 0]
        self.upper = model.jnt_range[ids, 1]
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def forward(self, joints_rad: np.ndarray, sites: list[str]) -> np.ndarray:
        """World positions (len(sites), 3) of the sites at these joint positions."""
        self.data.qpos[self.qpos] = joints_rad
        mujoco.mj_kinematics(self.model, self.data)
        return np.stack([self.data.site(s).xpos.copy() for s in sites])

    def site_frame(self, joints_rad: np.ndarray, site: str) -> tuple[np.ndarray, np.ndarray]:
        self.data.qpos[self.qpos] = joints_rad
        mujoco.mj_kinematics(self.model, self.data)
        s = self.data.site(site)
        return s.xpos.copy(), s.xmat.reshape(3, 3).copy()

    def solve(self, joints_rad: np.ndarray, site: str, target_m: np.ndarray, columns: np.ndarray,
              *, target_rot: np.ndarray | None = None, lower: np.ndarray | None = None,
              upper: np.ndarray | None = None, iterations: int = 20, damping: float = 1e-3,
              rot_weight: float = 0.05) -> np.ndarray:
        """Moves the joints indexed by ``columns`` (into joint_names) to put ``site`` at
        ``target_m`` (and its frame at ``target_rot`` when given); other joints stay put."""
        q = np.array(joints_rad, dtype=np.float64)
        lower = self.lower if lower is None else lower
        upper = self.upper if upper is None else upper
        sid = self.model.site(site).id
        dofs = self.dof[columns]
        for _ in range(iterations):
            self.data.qpos[self.qpos] = q
            mujoco.mj_kinematics(self.model, self.data)
            mujoco.mj_comPos(self.model, self.data)
            error = target_m - self.data.site_xpos[sid]
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, sid)
            jac = self._jacp[:, dofs]
            if target_rot is not None:
                current = self.data.site_xmat[sid].reshape(3, 3)
                rot_err = 0.5 * sum(np.cross(current[:, k], target_rot[:, k]) for k in range(3))
                error = np.concatenate([error, rot_weight * rot_err])
                jac = np.vstack([jac, rot_weight * self._jacr[:, dofs]])
            if np.linalg.norm(error) < 1e-5:
                break
            step = jac.T @ np.linalg.solve(jac @ jac.T + damping**2 * np.eye(len(error)), error)
            q[columns] = np.clip(q[columns] + step, lower[columns], upper[columns])
        return q
