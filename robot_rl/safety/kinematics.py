"""Forward kinematics of a robot model's sites, by MuJoCo itself (``mj_kinematics``).

The workspace check must agree with the model the twin simulates, so it asks the same library the
twin runs on: the robot's model (MJCF, or a URDF MuJoCo compiles) is loaded by MuJoCo's own parser
and every site position comes from ``mujoco.mj_kinematics`` on a private ``MjData``. A second
parser would have to follow every MJCF feature the first understands (frames, default classes,
includes, replicate, attach, URDF) or refuse the model; MuJoCo's needs no such list.

Only the joints named by the caller move; every other joint of the model (an object's hinge, a
free body) stays at its reference position, the model's ``qpos0``. Named joints must be hinge or
slide joints: one number each (rad or m). Not thread-safe (one ``MjData``): one instance per thread.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

_SCALAR_JOINTS = {int(mujoco.mjtJoint.mjJNT_HINGE): "hinge",
                  int(mujoco.mjtJoint.mjJNT_SLIDE): "slide"}
_JOINT_KINDS = {int(mujoco.mjtJoint.mjJNT_FREE): "free", int(mujoco.mjtJoint.mjJNT_BALL): "ball",
                **_SCALAR_JOINTS}


class MjcfError(ValueError):
    """The model cannot be used for kinematics; the message names the file and what is wrong."""


class Kinematics:
    """Site positions (world frame, m) as a function of the named joints' positions (rad or m)."""

    def __init__(self, model: mujoco.MjModel, joint_names: tuple[str, ...] | list[str],
                 source: str) -> None:
        self.source = source
        self.joint_names = tuple(joint_names)
        self.model_joint_names = tuple(model.joint(i).name for i in range(model.njnt))
        missing = [n for n in self.joint_names if n not in self.model_joint_names]
        if missing:
            raise MjcfError(f"{source}: no joint named {', '.join(missing)}; "
                            f"joints: {', '.join(self.model_joint_names) or 'none'}")
        ids = [model.joint(n).id for n in self.joint_names]
        wrong = [f"{n} ({_JOINT_KINDS.get(int(model.jnt_type[i]), '?')})"
                 for n, i in zip(self.joint_names, ids) if int(model.jnt_type[i]) not in
                 _SCALAR_JOINTS]
        if wrong:
            raise MjcfError(f"{source}: joints {', '.join(wrong)} are not hinge or slide joints")
        self._model = model
        self._data = mujoco.MjData(model)  # qpos starts at qpos0: the unnamed joints stay there
        # views into the MjData's own arrays, made once: a call then costs about the kinematics
        self._qpos_view, self._site_xpos = self._data.qpos, self._data.site_xpos
        self._qpos = _index(np.array([model.jnt_qposadr[i] for i in ids], dtype=int))
        self._site_ids: dict[tuple[str, ...], np.ndarray] = {}
        self._site_names = tuple(model.site(i).name for i in range(model.nsite)
                                 if model.site(i).name)

    @classmethod
    def from_mjcf(cls, path: str | Path, joint_names: tuple[str, ...] | list[str]) -> Kinematics:
        """From a model file (MJCF or URDF); MuJoCo's parse or compile error names the file."""
        path = Path(path)
        if not path.is_file():
            raise MjcfError(f"{path}: cannot read the model: no such file")
        try:
            model = mujoco.MjModel.from_xml_path(str(path))
        except ValueError as err:  # MuJoCo's parse and compile errors
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise MjcfError(f"{path}: MuJoCo cannot load the model: {first}") from None
        return cls(model, joint_names, str(path))

    @property
    def site_names(self) -> tuple[str, ...]:
        return self._site_names

    def site_positions_m(self, joint_positions: np.ndarray, site_names: tuple[str, ...] | list[str]
                         ) -> np.ndarray:
        """Site positions, shape (..., n_sites, 3), for joint positions of shape (..., n_joints)."""
        q = np.asarray(joint_positions, dtype=float)
        n = len(self.joint_names)
        if q.shape[-1:] != (n,):
            raise ValueError(f"{self.source}: expected {n} joint positions "
                             f"({', '.join(self.joint_names)}), got shape {q.shape}")
        sites = self._ids(tuple(site_names))
        rows = q.reshape(int(np.prod(q.shape[:-1])), n)  # not -1: a robot may have no joints
        out = np.empty((len(rows), len(sites), 3))
        model, data, qpos_view, qpos = self._model, self._data, self._qpos_view, self._qpos
        for k, row in enumerate(rows):
            qpos_view[qpos] = row
            mujoco.mj_kinematics(model, data)
            out[k] = self._site_xpos[sites]
        return out.reshape(*q.shape[:-1], len(sites), 3)

    def _ids(self, names: tuple[str, ...]) -> np.ndarray:
        """The model's ids of these sites (cached per site list)."""
        if names not in self._site_ids:
            missing = [n for n in names if n not in self._site_names]
            if missing:
                raise MjcfError(f"{self.source}: no site named {', '.join(missing)}; "
                                f"sites: {', '.join(self._site_names) or 'none'}")
            self._site_ids[names] = np.array([self._model.site(n).id for n in names], dtype=int)
        return self._site_ids[names]


def _index(addresses: np.ndarray) -> slice | np.ndarray:
    """A slice where the addresses are consecutive (the usual case: a robot's joints in model
    order), which numpy assigns several times faster than an index array."""
    if len(addresses) and np.array_equal(addresses, np.arange(addresses[0],
                                                              addresses[0] + len(addresses))):
        return slice(int(addresses[0]), int(addresses[0]) + len(addresses))
    return addresses
