"""The ONNX Runtime path needs no torch: a process where `import torch` fails loads an export directory and
runs `predict_action` (what a robot computer or a small Jetson without torch does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from tests.vla.model.conftest import io_of, make_obs, make_policy, runtime

BLOCKER = textwrap.dedent("""
    import sys

    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"{name} is blocked in this process")
            return None

    sys.meta_path.insert(0, _NoTorch())
""")


def test_onnx_runtime_runs_in_a_process_without_torch(tmp_path):
    from deploy.export import export_onnx

    policy = make_policy(projector="pixel_shuffle", decoding="parallel").eval()
    export_onnx(policy, io_of(policy), tmp_path / "onnx")
    obs = [make_obs(s, text) for s, text in enumerate(["pick up the red cube", "lift", "stack the cubes"])]
    want = runtime(policy).infer_batch(obs).actions
    np.savez(tmp_path / "obs.npz", **{f"{k}{i}": o[k] for i, o in enumerate(obs) for k in ("agentview", "wrist", "state")})
    script = BLOCKER + textwrap.dedent(f"""
        import json, sys
        import numpy as np
        try:
            import torch  # noqa: F401
            sys.exit("torch imported although blocked")
        except ImportError:
            pass
        from deploy.runtimes import make_runtime
        d = np.load({str(tmp_path / "obs.npz")!r})
        texts = {json.dumps([o["instruction"] for o in obs])}
        obs = [dict(agentview=d[f"agentview{{i}}"], wrist=d[f"wrist{{i}}"], state=d[f"state{{i}}"], instruction=t)
               for i, t in enumerate(texts)]
        rt = make_runtime("onnx", {str(tmp_path / "onnx")!r}, threads=1)
        acts = [rt.predict_action(o).tolist() for o in obs]
        leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "transformers")))
        print(json.dumps({{"actions": acts, "leaked": leaked, "execute_steps": rt.execute_steps}}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.getcwd()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["leaked"] == []  # neither torch nor transformers was needed
    np.testing.assert_allclose(np.asarray(res["actions"], dtype=np.float32), want, rtol=0, atol=1e-6)
