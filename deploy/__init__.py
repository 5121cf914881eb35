"""Deployment: runtimes, the ZeroMQ robot bridge, the real-time control loop, safety, teleop recording.

    vla bridge --task PickCube --bind tcp://127.0.0.1:5555 [--lockstep] [--record DIR] [--curve-keys DIR]
    vla control --connect tcp://127.0.0.1:5555 --expert PickCube --hz 10 --chunk-mode receding
    vla teleop --connect tcp://127.0.0.1:5555

Modules: `protocol` (wire format, docs/protocol.md), `bridge` (BridgeServer, BridgeClient), `robot`
(Robot interface, SimRobot, RealArmRobot over an EEDeltaDriver, KinematicRobot, SimExpertPolicy),
`safety` (clamps, workspace box, watchdog), `control` (ControlLoop; chunks through `vla.chunking`),
`runtimes` (make_runtime; the ONNX Runtime and TensorRT backends of `vla.runtime.Runtime`), `manifest` (the
export format), `trt` (TensorRT probing), `export` (ONNX / TensorRT build), `bench` (runtime latency),
`recorder` (LeRobot recording), `teleop`, `keys` (CurveZMQ). Submodules are imported explicitly so
`import deploy` stays free of zmq/torch.
"""
