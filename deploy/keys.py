"""CurveZMQ keys for the bridge: generation, loading, and the ZAP authenticator.

    vla bridge keygen --out keys/           # or: generate_keys("keys/")
    vla bridge --task PickCube --curve-keys keys/          # server: keys/server.key_secret + keys/authorized_clients/
    vla control --connect tcp://robot:5555 --curve-keys keys/ ...   # client: keys/client.key_secret + keys/server.key

Layout of a key directory (zmq certificate files, Z85 text):

    server.key, server.key_secret     the bridge's pair; clients need only server.key
    client.key, client.key_secret     one client pair; copy it (both files) + server.key to the policy machine
    authorized_clients/client.key     public keys the bridge accepts; add more *.key files for more clients

With keys on, traffic is encrypted and the bridge's ZAP authenticator refuses any peer whose
public key is not in authorized_clients/ (plain-text peers fail the handshake and get no reply).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


def generate_keys(out: str | Path, overwrite: bool = False) -> Path:
    """Create server and client key pairs and authorized_clients/ in `out`; FileExistsError if present."""
    if not zmq.has("curve"):
        raise RuntimeError("this libzmq was built without CURVE support")
    out = Path(out)
    if (out / "server.key_secret").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds bridge keys; pass overwrite=True (or --overwrite) to replace them")
    out.mkdir(parents=True, exist_ok=True)
    zmq.auth.create_certificates(out, "server")
    zmq.auth.create_certificates(out, "client")
    auth = out / "authorized_clients"
    auth.mkdir(exist_ok=True)
    shutil.copyfile(out / "client.key", auth / "client.key")
    for secret in out.glob("*.key_secret"):
        secret.chmod(0o600)
    return out


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing CurveZMQ key file (create keys with `vla bridge keygen --out DIR`)")
    pub, sec = zmq.auth.load_certificate(path)
    if secret and sec is None:
        raise ValueError(f"{path}: holds no secret key")
    return pub, sec


def configure_server(sock: zmq.Socket, key_dir: str | Path) -> ThreadAuthenticator:
    """Make `sock` a CURVE server and start a ZAP authenticator on its context (stop it on close)."""
    key_dir = Path(key_dir)
    pub, sec = _load(key_dir / "server.key_secret", secret=True)
    allowed = key_dir / "authorized_clients"
    if not allowed.is_dir() or not any(allowed.glob("*.key")):
        raise FileNotFoundError(f"{allowed}: no authorized client keys (*.key)")
    auth = ThreadAuthenticator(sock.context)
    auth.start()
    auth.configure_curve(domain="*", location=str(allowed))
    sock.curve_secretkey = sec
    sock.curve_publickey = pub
    sock.curve_server = True
    return auth


def configure_client(sock: zmq.Socket, key_dir: str | Path) -> None:
    """Make `sock` a CURVE client with key_dir/client.key_secret, trusting key_dir/server.key."""
    key_dir = Path(key_dir)
    pub, sec = _load(key_dir / "client.key_secret", secret=True)
    server_pub, _ = _load(key_dir / "server.key", secret=False)
    sock.curve_secretkey = sec
    sock.curve_publickey = pub
    sock.curve_serverkey = server_pub
