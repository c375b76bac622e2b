"""Free TCP ports for the servers the tests start: p and p + 1 both free, as SGLang binds its broker on p + 1."""

import socket

from glm_image_sglang.preflight import port_free


def free_port() -> int:
    """A port p the kernel hands out with p + 1 free too, by the launcher's own pre-flight check.

    Linux hands bind(0) odd ports and outgoing connections even ones, so p + 1 is often the local end of some
    test's client connection: a server given p then fails the launcher's pre-flight check of p + 1.
    """
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 65535 and port_free("127.0.0.1", port + 1):
            return port
    raise RuntimeError("no port p with p + 1 free in 200 tries")
