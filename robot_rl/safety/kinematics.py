"""Forward kinematics of MJCF sites in pure numpy, read from the robot's own MJCF file.

The supervisor must not import MuJoCo, yet its workspace check must agree with the model the twin
simulates; so this module reads the same XML and applies MuJoCo's kinematic conventions: body
pos/orientation relative to the parent, hinge and slide joints (axis and anchor in the body frame,
applied in order, angle measured from ``ref``), ``<frame>`` elements, ``<default>`` classes with
``childclass``, ``<compiler angle=... eulerseq=...>`` and ``<include>``. Joints not named by the
caller stay at their reference position (as MuJoCo's qpos0).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_ORIENTATIONS = ("quat", "axisangle", "euler", "xyaxes", "zaxis")
_EYE = np.eye(3)


class MjcfError(ValueError):
    """The MJCF cannot be used for kinematics; the message names the file and the element."""


@dataclass(frozen=True)
class _Joint:
    kind: str  # "hinge" or "slide"
    index: int  # into the caller's joint vector, -1: fixed at its reference
    axis: np.ndarray
    pos: np.ndarray
    ref: float


@dataclass(frozen=True)
class _Body:
    name: str
    parent: int
    pos: np.ndarray
    rot: np.ndarray
    joints: tuple[_Joint, ...]


@dataclass(frozen=True)
class _Site:
    body: int
    pos: np.ndarray


@dataclass(frozen=True)
class _Chains:
    """Each site's position as the translation of a product of per-joint 4x4 transforms.

    Site s is at the translation of ``G[s, 0] @ ... @ G[s, L-1]``. The transform of a joint's slot
    is linear in the terms (1, sin a, 1 - cos a, a) of its angle a = q[joint_index] - ref: the
    fixed transform from the previous joint, times a hinge's rotation about its anchor (Rodrigues)
    or a slide's translation. A last constant slot translates to the site. So a call costs a fixed
    few numpy operations, not a few per body. L is a power of two (identity slots pad it) so the
    product is a pairwise reduction.
    """

    joint_index: np.ndarray  # (S, L) int
    ref: np.ndarray  # (S, L)
    terms: np.ndarray  # (S, L, 4, 16): term k's coefficient matrix, flattened


class Kinematics:
    """Site positions (world frame, m) as a function of the named joints' positions (rad or m)."""

    def __init__(self, bodies: list[_Body], sites: dict[str, _Site], joint_names: tuple[str, ...],
                 source: str, model_joint_names: tuple[str, ...] = ()) -> None:
        self._bodies = bodies
        self._sites = sites
        self.joint_names = joint_names
        self.model_joint_names = model_joint_names  # every joint in the MJCF, in document order
        self.source = source
        self._plans: dict[tuple[str, ...], _Chains] = {}

    @classmethod
    def from_mjcf(cls, path: str | Path, joint_names: tuple[str, ...] | list[str]) -> Kinematics:
        path = Path(path)
        try:
            root = _load_xml(path)
        except OSError as err:
            raise MjcfError(f"{path}: cannot read the MJCF: {err.strerror or err}") from err
        return _Parser(root, str(path), tuple(joint_names)).build()

    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(self._sites)

    def site_positions_m(self, joint_positions: np.ndarray, site_names: tuple[str, ...] | list[str]
                         ) -> np.ndarray:
        """Site positions, shape (..., n_sites, 3), for joint positions of shape (..., n_joints)."""
        q = np.asarray(joint_positions, dtype=float)
        if q.shape[-1:] != (len(self.joint_names),):
            raise ValueError(f"{self.source}: expected {len(self.joint_names)} joint positions "
                             f"({', '.join(self.joint_names)}), got shape {q.shape}")
        batch_shape = q.shape[:-1]
        # no joints: one dummy column for the identity slots to index
        q = q.reshape(-1, q.shape[-1]) if q.shape[-1] else np.zeros((int(np.prod(batch_shape)), 1))
        chains = self._plan(tuple(site_names))
        angle = q[:, chains.joint_index] - chains.ref  # (B, S, L)
        coefficients = np.empty((*angle.shape, 1, 4))
        coefficients[..., 0, 0] = 1.0
        np.sin(angle, out=coefficients[..., 0, 1])
        np.cos(angle, out=coefficients[..., 0, 2])
        np.subtract(1.0, coefficients[..., 0, 2], out=coefficients[..., 0, 2])
        coefficients[..., 0, 3] = angle
        g = (coefficients @ chains.terms).reshape(*angle.shape, 4, 4)
        while g.shape[2] > 1:
            g = g[:, :, 0::2] @ g[:, :, 1::2]
        return g[:, :, 0, :3, 3].reshape(*batch_shape, len(site_names), 3)

    def _plan(self, names: tuple[str, ...]) -> _Chains:
        """The chains of these sites (cached per site list)."""
        if names not in self._plans:
            missing = [n for n in names if n not in self._sites]
            if missing:
                raise MjcfError(f"{self.source}: no site named {', '.join(missing)}; "
                                f"sites: {', '.join(self._sites) or 'none'}")
            self._plans[names] = _stack_chains([self._chain(self._sites[n]) for n in names])
        return self._plans[names]

    def _chain(self, site: _Site) -> list[tuple[np.ndarray, _Joint | None]]:
        """(fixed transform before the joint, joint) per controlled joint from the world to the
        site, then (the transform from the last joint's frame to the site, None)."""
        path, b = [], site.body
        while b > 0:
            path.append(self._bodies[b])
            b = self._bodies[b].parent
        slots, fixed = [], np.eye(4)
        for body in reversed(path):
            fixed = fixed @ _affine(body.rot, body.pos)
            for joint in body.joints:
                if joint.index >= 0:  # the others stay at their reference: the identity
                    slots.append((fixed, joint))
                    fixed = np.eye(4)
        return [*slots, (fixed @ _affine(np.eye(3), site.pos), None)]


def _affine(rot: np.ndarray, pos: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rot, pos
    return out


def _slot_terms(fixed: np.ndarray, joint: _Joint | None) -> np.ndarray:
    """The 4x4 coefficients of (1, sin a, 1 - cos a, a) in ``fixed @ joint transform(a)``.

    Hinge about axis k through anchor p: [[R, p - R p], [0, 1]] with R = I + sin a K + (1 - cos a)
    K^2, K the cross-product matrix of k. Slide: a translation by a k. No joint: ``fixed``."""
    terms = np.zeros((4, 4, 4))
    terms[0] = fixed
    rot = fixed[:3, :3]
    if joint is None:
        return terms
    if joint.kind == "slide":
        terms[3, :3, 3] = rot @ joint.axis
        return terms
    skew = _skew(joint.axis)
    for k, power in ((1, skew), (2, skew @ skew)):
        terms[k, :3, :3] = rot @ power
        terms[k, :3, 3] = -(rot @ power @ joint.pos)
    return terms


def _stack_chains(chains: list[list[tuple[np.ndarray, _Joint | None]]]) -> _Chains:
    longest = max([len(slots) for slots in chains] + [1])
    length = 1 << (longest - 1).bit_length()
    identity = np.zeros((4, 4, 4))
    identity[0] = np.eye(4)
    n = len(chains)
    index, ref = np.zeros((n, length), dtype=int), np.zeros((n, length))
    terms = np.broadcast_to(identity, (n, length, 4, 4, 4)).copy()
    for s, slots in enumerate(chains):
        for slot, (fixed, joint) in enumerate(slots):
            if joint is not None:
                index[s, slot], ref[s, slot] = joint.index, joint.ref
            terms[s, slot] = _slot_terms(fixed, joint)
    return _Chains(index, ref, terms.reshape(n, length, 4, 16))


def _rodrigues(skew: np.ndarray, angle: np.ndarray) -> np.ndarray:
    s = np.sin(angle)[:, None, None]
    c = (1.0 - np.cos(angle))[:, None, None]
    return _EYE + s * skew + c * (skew @ skew)


def _load_xml(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    _splice_includes(root, path.parent)
    return root


def _splice_includes(element: ET.Element, base: Path) -> None:
    for i, child in enumerate(list(element)):
        if child.tag == "include":
            included = ET.parse(base / child.attrib["file"]).getroot()
            _splice_includes(included, base)
            element.remove(child)
            for k, grandchild in enumerate(list(included)):
                element.insert(i + k, grandchild)
        else:
            _splice_includes(child, base)


class _Parser:
    def __init__(self, root: ET.Element, source: str, joint_names: tuple[str, ...]) -> None:
        if root.tag != "mujoco":
            raise MjcfError(f"{source}: the root element is <{root.tag}>, expected <mujoco>")
        self.root, self.source, self.joint_names = root, source, joint_names
        self.degrees, self.eulerseq = True, "xyz"  # MuJoCo's defaults
        for compiler in root.iter("compiler"):
            angle = compiler.get("angle", "degree" if self.degrees else "radian")
            if angle not in ("degree", "radian"):
                raise MjcfError(f"{source}: <compiler angle='{angle}'>: expected degree or radian")
            self.degrees = angle == "degree"
            self.eulerseq = compiler.get("eulerseq", self.eulerseq)
        if len(self.eulerseq) != 3 or any(c not in "xyzXYZ" for c in self.eulerseq):
            raise MjcfError(f"{source}: <compiler eulerseq='{self.eulerseq}'>: "
                            "expected three of xyzXYZ")
        self.defaults: dict[str, dict[str, dict[str, str]]] = {}
        for default in root.findall("default"):
            self._read_default(default, {}, top=True)
        self.bodies = [_Body("world", -1, np.zeros(3), np.eye(3), ())]
        self.sites: dict[str, _Site] = {}
        self.found: dict[str, str] = {}

    def build(self) -> Kinematics:
        for world in self.root.findall("worldbody"):
            self._walk(world, 0, np.zeros(3), np.eye(3), "main")
        missing = [n for n in self.joint_names if n not in self.found]
        if missing:
            raise MjcfError(f"{self.source}: no joint named {', '.join(missing)}; "
                            f"joints: {', '.join(self.found) or 'none'}")
        wrong = [f"{n} ({k})" for n, k in self.found.items()
                 if n in self.joint_names and k not in ("hinge", "slide")]
        if wrong:
            raise MjcfError(f"{self.source}: joints {', '.join(wrong)} are not hinge or slide "
                            "joints")
        return Kinematics(self.bodies, self.sites, self.joint_names, self.source,
                          tuple(self.found))

    def _read_default(self, element: ET.Element, inherited: dict, top: bool = False) -> None:
        name = element.get("class", "main" if top else None)
        if name is None:
            raise MjcfError(f"{self.source}: a nested <default> has no class attribute")
        own = {tag: dict(attrs) for tag, attrs in inherited.items()}
        for child in element:
            if child.tag != "default":
                own.setdefault(child.tag, {}).update(child.attrib)
        self.defaults[name] = own
        for child in element.findall("default"):
            self._read_default(child, own)

    def _attrs(self, element: ET.Element, childclass: str) -> dict[str, str]:
        cls = element.get("class", childclass)
        if cls not in self.defaults and cls != "main":
            raise MjcfError(f"{self.source}: <{element.tag} name='{element.get('name', '')}'>: "
                            f"unknown class '{cls}'")
        return {**self.defaults.get(cls, {}).get(element.tag, {}), **element.attrib}

    def _walk(self, element: ET.Element, body: int, frame_pos: np.ndarray, frame_rot: np.ndarray,
              childclass: str) -> None:
        """Visits children of a body or frame; frame_pos/rot map the element's frame to the body."""
        for child in element:
            tag = child.tag
            if tag in ("body", "frame", "site"):
                attrs = self._attrs(child, childclass) if tag == "site" else child.attrib
                pos, rot = self._pose(child, attrs)
                pos, rot = frame_pos + frame_rot @ pos, frame_rot @ rot
            if tag == "body":
                index = len(self.bodies)
                inner = child.get("childclass", childclass)
                self.bodies.append(_Body(child.get("name", f"body{index}"), body, pos, rot,
                                         self._joints(child, inner)))
                self._walk(child, index, np.zeros(3), np.eye(3), inner)
            elif tag == "frame":
                self._walk(child, body, pos, rot, child.get("childclass", childclass))
            elif tag == "site" and "name" in child.attrib:
                self.sites[child.attrib["name"]] = _Site(body, pos)
            elif tag in ("joint", "freejoint") and element.tag == "frame":
                raise MjcfError(f"{self.source}: a joint inside a <frame> is not supported")
            elif tag in ("replicate", "attach"):
                raise MjcfError(f"{self.source}: <{tag}> is not supported by the safety kinematics")

    def _joints(self, body: ET.Element, childclass: str) -> tuple[_Joint, ...]:
        joints = []
        for child in body:
            if child.tag == "freejoint":
                self.found[child.get("name", f"free{len(self.found)}")] = "free"
                continue
            if child.tag != "joint":
                continue
            attrs = self._attrs(child, childclass)
            name = attrs.get("name", f"joint{len(self.found)}")
            kind = attrs.get("type", "hinge")
            self.found[name] = kind
            if kind not in ("hinge", "slide"):
                continue  # ball/free joints of other bodies stay at their reference pose
            axis = self._vector(attrs, "axis", 3, (0.0, 0.0, 1.0), child)
            norm = np.linalg.norm(axis)
            if norm < 1e-12:
                raise MjcfError(f"{self.source}: joint {name}: axis is zero")
            axis = axis / norm
            ref = float(attrs.get("ref", 0.0))
            if kind == "hinge" and self.degrees:
                ref = np.deg2rad(ref)
            index = self.joint_names.index(name) if name in self.joint_names else -1
            joints.append(_Joint(kind, index, axis, self._vector(attrs, "pos", 3, (0, 0, 0), child),
                                 ref))
        return tuple(joints)

    def _vector(self, attrs: dict, key: str, size: int, default, element: ET.Element) -> np.ndarray:
        if key not in attrs:
            return np.array(default, dtype=float)
        try:
            values = np.array([float(v) for v in attrs[key].split()])
        except ValueError:
            values = np.zeros(0)
        if values.shape != (size,):
            raise MjcfError(f"{self.source}: <{element.tag} name='{element.get('name', '')}'> "
                            f"{key}='{attrs[key]}': expected {size} numbers")
        return values

    def _pose(self, element: ET.Element, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
        if "pos" not in attrs and "fromto" in attrs:
            ends = self._vector(attrs, "fromto", 6, None, element)
            pos = 0.5 * (ends[:3] + ends[3:])
        else:
            pos = self._vector(attrs, "pos", 3, (0, 0, 0), element)
        given = [k for k in _ORIENTATIONS if k in attrs]
        if len(given) > 1:
            raise MjcfError(f"{self.source}: <{element.tag} name='{element.get('name', '')}'> "
                            f"has several orientations: {', '.join(given)}")
        if not given:
            return pos, np.eye(3)
        key = given[0]
        size = {"quat": 4, "axisangle": 4, "euler": 3, "xyaxes": 6, "zaxis": 3}[key]
        value = self._vector(attrs, key, size, None, element)
        return pos, self._rotation(key, value)

    def _rotation(self, key: str, v: np.ndarray) -> np.ndarray:
        scale = np.pi / 180.0 if self.degrees else 1.0
        if key == "quat":
            return _quat_to_mat(v)
        if key == "axisangle":
            axis = v[:3] / np.linalg.norm(v[:3])
            return _rodrigues(_skew(axis), np.array([v[3] * scale]))[0]
        if key == "euler":
            rot = np.eye(3)
            for letter, angle in zip(self.eulerseq, v * scale):
                axis = np.eye(3)["xyz".index(letter.lower())]
                step = _rodrigues(_skew(axis), np.array([angle]))[0]
                # lowercase: rotating (intrinsic) axes; uppercase: fixed (extrinsic) axes
                rot = rot @ step if letter.islower() else step @ rot
            return rot
        if key == "xyaxes":
            x = v[:3] / np.linalg.norm(v[:3])
            y = v[3:] - x * (x @ v[3:])
            y = y / np.linalg.norm(y)
            return np.column_stack([x, y, np.cross(x, y)])
        z = v / np.linalg.norm(v)  # zaxis: the shortest rotation taking (0, 0, 1) onto z
        axis = np.cross([0.0, 0.0, 1.0], z)
        sin = np.linalg.norm(axis)
        if sin < 1e-12:
            return np.eye(3) if z[2] > 0 else np.diag([1.0, -1.0, -1.0])
        return _rodrigues(_skew(axis / sin), np.array([np.arctan2(sin, z[2])]))[0]


def _skew(a: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])


def _quat_to_mat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])
