"""End-effector delta controller: damped-least-squares differential IK driving the Panda's joint servos.

The wheel's Panda has *position* actuators (kp 870 / 120, joint damping 100 / 10), so the controller
writes joint position targets, not torques. Once per policy step `set_action` turns the 7-D action
`[dx, dy, dz, drx, dry, drz, gripper]` (metres / axis-angle radians in the base frame, gripper in
[-1, 1], -1 open) into an end-effector target pose: the previous target (kept within `max_lag` of the
measured tcp pose) moved by the clamped delta, clipped to the workspace box. The rotation delta is
applied on the left (`R_target = exp(drot) @ R`), i.e. about base-frame axes. At every physics step
`apply` takes one DLS IK step toward that target (with a null-space pull toward the home posture so
long episodes keep a consistent arm shape) and sets `ctrl = q + servo_gain * dq`, clipped to the joint
limits. `servo_gain > 1` compensates the servo's first-order lag (time constant damping / kp ~ 0.1 s).
The arm's joint damping caps its speed near 0.3 m/s, hence the 3 cm per 10 Hz step translation clamp.

    ctrl = EEDeltaController(model, ControllerConfig())
    ctrl.set_action(data, action)            # once per policy step
    for _ in range(n_substeps):
        ctrl.apply(data); mujoco.mj_step(model, data)
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from sim.scene import ARM_JOINTS, FINGER_JOINTS, FINGER_OPEN


@dataclass(frozen=True)
class ControllerConfig:
    max_dpos: float = 0.03  # m per policy step (0.3 m/s at 10 Hz; the servos saturate beyond) (per-axis clip, then norm clamp)
    max_drot: float = 0.25  # rad per policy step (per-axis clip, then norm clamp)
    workspace_low: tuple[float, float, float] = (0.15, -0.45, 0.015)  # m, tcp target box, base frame
    workspace_high: tuple[float, float, float] = (0.8, 0.45, 0.55)
    damping: float = 0.05  # DLS lambda: keeps dq bounded near singularities
    servo_gain: float = 2.0  # overdrive of the position servo target (see module docstring)
    nullspace_gain: float = 0.5  # pull toward the home posture in the Jacobian null space
    joint_margin: float = 0.02  # rad kept away from each joint limit
    jacobian_every: int = 5  # physics steps between Jacobian / DLS refreshes (error feedback: every step)
    max_lag_pos: float = 0.03  # m: how far the accumulated target may run ahead of the measured tcp
    max_lag_rot: float = 0.4  # rad: same for orientation (bounds wind-up when blocked by contact)

    def __post_init__(self) -> None:
        if not self.max_dpos > 0:
            raise ValueError(f"max_dpos={self.max_dpos}: must be > 0 m")
        if not self.max_drot > 0:
            raise ValueError(f"max_drot={self.max_drot}: must be > 0 rad")
        if len(self.workspace_low) != 3 or len(self.workspace_high) != 3:
            raise ValueError(
                f"workspace_low/high={self.workspace_low}/{self.workspace_high}: need 3 values each"
            )
        if any(lo >= hi for lo, hi in zip(self.workspace_low, self.workspace_high, strict=True)):
            raise ValueError(
                f"workspace_low={self.workspace_low} must be < workspace_high={self.workspace_high} per axis"
            )
        if not self.damping > 0:
            raise ValueError(f"damping={self.damping}: must be > 0 (0 is an undamped pseudo-inverse)")
        if not 0 < self.servo_gain <= 10:
            raise ValueError(f"servo_gain={self.servo_gain}: must be in (0, 10]")
        if self.nullspace_gain < 0:
            raise ValueError(f"nullspace_gain={self.nullspace_gain}: must be >= 0")
        if self.max_lag_pos <= 0 or self.max_lag_rot <= 0:
            raise ValueError(f"max_lag_pos/rot={self.max_lag_pos}/{self.max_lag_rot}: must be > 0")
        if self.jacobian_every < 1:
            raise ValueError(f"jacobian_every={self.jacobian_every}: must be >= 1 physics step")
        if self.joint_margin < 0:
            raise ValueError(f"joint_margin={self.joint_margin}: must be >= 0 rad")


def clamp_action(action: np.ndarray, max_dpos: float, max_drot: float) -> np.ndarray:
    """Per-axis clip then norm clamp of the translation and rotation parts; gripper clipped to [-1, 1]."""
    a = np.asarray(action, dtype=np.float64).reshape(7).copy()
    a[:3] = np.clip(a[:3], -max_dpos, max_dpos)
    a[3:6] = np.clip(a[3:6], -max_drot, max_drot)
    for sl, limit in ((slice(0, 3), max_dpos), (slice(3, 6), max_drot)):
        n = np.linalg.norm(a[sl])
        if n > limit:
            a[sl] *= limit / n
    a[6] = np.clip(a[6], -1.0, 1.0)
    return a


def _clip_norm(v: np.ndarray, limit: float) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v * (limit / n) if n > limit else v


def rotvec_to_mat(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle vector (radians) -> 3x3 rotation matrix."""
    quat = np.zeros(4)
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    mujoco.mju_axisAngle2Quat(quat, np.asarray(rotvec, dtype=np.float64) / angle, angle)
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, quat)
    return mat.reshape(3, 3)


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Axis-angle vector (base frame) rotating `current` onto `target` (both 3x3)."""
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, (target @ current.T).ravel())
    if quat[0] < 0:  # shortest rotation
        quat = -quat
    vel = np.empty(3)
    mujoco.mju_quat2Vel(vel, quat, 1.0)
    return vel


class EEDeltaController:
    """Differential IK for the tcp site of the scene built by `sim.scene.build_model`."""

    def __init__(self, model: mujoco.MjModel, config: ControllerConfig, home_qpos: np.ndarray) -> None:
        self.model = model
        self.config = config
        self.site_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "tcp")
        if self.site_id < 0:
            raise ValueError("model has no 'tcp' site: build it with sim.scene.build_model")
        jids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in ARM_JOINTS]
        self.qadr = np.array([model.jnt_qposadr[j] for j in jids])
        self.dadr = np.array([model.jnt_dofadr[j] for j in jids])
        if self.qadr.tolist() != list(range(7)) or self.dadr.tolist() != list(range(7)):
            raise ValueError(
                f"arm joints must be the model's first 7 qpos/dofs, got {self.qadr}, {self.dadr}"
            )
        self.finger_qadr = np.array(
            [model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n)] for n in FINGER_JOINTS]
        )
        ranges = model.jnt_range[jids]  # [7, 2]
        self.q_low = ranges[:, 0] + config.joint_margin
        self.q_high = ranges[:, 1] - config.joint_margin
        self.home = np.asarray(home_qpos, dtype=np.float64).reshape(7)
        self.ws_low = np.asarray(config.workspace_low)
        self.ws_high = np.asarray(config.workspace_high)
        self._jac_full = np.zeros((6, model.nv))
        self._jacp, self._jacr = self._jac_full[:3], self._jac_full[3:]  # contiguous row blocks
        self._jac = self._jac_full[:, :7]
        self._err = np.zeros(6)
        self._err_rot = self._err[3:]
        self._lam2_eye = config.damping**2 * np.eye(6)
        self._null_k = config.nullspace_gain * 0.02  # per physics step
        self._since_linearize = config.jacobian_every  # linearize on the first apply
        self._qcur = np.zeros(4)
        self._qerr = np.zeros(4)
        self._vel = np.zeros(3)
        self._target_quat = np.array([1.0, 0.0, 0.0, 0.0])
        self.target_pos = np.zeros(3)
        self._target_mat = np.eye(3)
        self.gripper_ctrl = FINGER_OPEN

    @property
    def target_mat(self) -> np.ndarray:
        return self._target_mat

    @target_mat.setter
    def target_mat(self, mat: np.ndarray) -> None:
        self._target_mat = np.asarray(mat, dtype=np.float64).reshape(3, 3).copy()
        mujoco.mju_mat2Quat(self._target_quat, self._target_mat.ravel())

    def tcp_pose(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        return data.site_xpos[self.site_id].copy(), data.site_xmat[self.site_id].reshape(3, 3).copy()

    def hold(self, data: mujoco.MjData) -> None:
        """Target = current pose, gripper open (after reset)."""
        self.target_pos, self.target_mat = self.tcp_pose(data)
        self.gripper_ctrl = FINGER_OPEN
        self._since_linearize = self.config.jacobian_every

    def set_action(self, data: mujoco.MjData, action: np.ndarray) -> np.ndarray:
        """Set the pose target from a raw action; returns the clamped action actually applied."""
        cfg = self.config
        a = clamp_action(action, cfg.max_dpos, cfg.max_drot)
        pos, mat = self.tcp_pose(data)
        # The delta moves the previous *target* (so the arm covers the commanded distance over time despite
        # servo lag), re-anchored to within max_lag of the measured pose so contact cannot wind it up.
        anchor_pos = pos + _clip_norm(self.target_pos - pos, cfg.max_lag_pos)
        anchor_mat = rotvec_to_mat(_clip_norm(rotation_error(self.target_mat, mat), cfg.max_lag_rot)) @ mat
        self.target_pos = np.clip(anchor_pos + a[:3], self.ws_low, self.ws_high)
        self.target_mat = rotvec_to_mat(a[3:6]) @ anchor_mat
        # gripper in [-1, 1] -> each finger's slide target in [0.04 (open), 0 (closed)]
        self.gripper_ctrl = FINGER_OPEN * (1.0 - a[6]) / 2.0
        self._since_linearize = self.config.jacobian_every  # fresh linearization for the new target
        return a

    def _linearize(self, data: mujoco.MjData) -> None:
        """Refresh the DLS solution at the current posture: ctrl = M q + G err + c (see `apply`)."""
        mujoco.mj_jacSite(self.model, data, self._jacp, self._jacr, self.site_id)
        jac = self._jac  # [6, 7] view: arm dofs are the first 7 (asserted in __init__)
        a = jac @ jac.T + self._lam2_eye  # [6, 6], symmetric positive definite
        jpinv = np.linalg.solve(a, jac).T  # [7, 6] = J^T (J J^T + lambda^2 I)^-1 (a is symmetric)
        null_k = self._null_k * (np.eye(7) - jpinv @ jac)  # [7, 7] null-space pull toward home
        gain = self.config.servo_gain
        # ctrl = q + gain * (jpinv err + null_k (home - q))
        self._m = np.eye(7) - gain * null_k
        self._g = gain * jpinv
        self._c = gain * (null_k @ self.home)
        self._since_linearize = 0

    def apply(self, data: mujoco.MjData) -> None:
        """One DLS IK step toward the target; writes the 9 actuator controls.

        dq = J^+ err + (I - J^+ J) k (q_home - q) with J^+ = J^T (J J^T + lambda^2 I)^-1. The pose error
        is fed back every physics step; the linearization (J^+, null-space projector) is refreshed every
        `jacobian_every` physics steps and after each `set_action` (the posture moves < 1 mm between
        refreshes), which halves the controller's cost per physics step.
        """
        if self._since_linearize >= self.config.jacobian_every:
            self._linearize(data)
        self._since_linearize += 1
        sid = self.site_id
        err = self._err  # [6] = position error, rotation error (axis-angle, base frame)
        np.subtract(self.target_pos, data.site_xpos[sid], out=err[:3])
        qcur, qerr = self._qcur, self._qerr
        mujoco.mju_mat2Quat(qcur, data.site_xmat[sid])
        mujoco.mju_negQuat(qcur, qcur)
        mujoco.mju_mulQuat(qerr, self._target_quat, qcur)  # q_target * q_current^-1
        if qerr[0] < 0:  # shortest rotation
            np.negative(qerr, out=qerr)
        mujoco.mju_quat2Vel(self._err_rot, qerr, 1.0)
        ctrl = self._m @ data.qpos[:7]  # [7]
        ctrl += self._g @ err
        ctrl += self._c
        np.maximum(ctrl, self.q_low, out=ctrl)
        np.minimum(ctrl, self.q_high, out=ctrl)
        data.ctrl[:7] = ctrl
        data.ctrl[7:9] = self.gripper_ctrl
