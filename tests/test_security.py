"""Security properties the package promises: checkpoints never unpickle code, and nothing
reaches the network at run time (the whole suite runs behind tests/network_guard)."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys

import pytest

from tests.helpers import REPO

OFFLINE = "the clipbert test suite runs offline"
SOURCES = [*sorted((REPO / "clipbert").rglob("*.py")), *sorted(REPO.glob("*.py"))]


def unsafe_loads(source: str) -> list[int]:
    """Lines of ``torch.load(...)`` calls without ``weights_only=True``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        named = isinstance(func, ast.Attribute) and func.attr == "load"
        if not (named and isinstance(func.value, ast.Name) and func.value.id == "torch"):
            continue
        safe = any(
            k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in node.keywords
        )
        if not safe:
            lines.append(node.lineno)
    return lines


def test_every_torch_load_in_the_package_uses_weights_only() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}"
        for path in SOURCES
        for line in unsafe_loads(path.read_text())
    ]
    assert SOURCES and not offenders, f"torch.load without weights_only=True: {offenders}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("torch.load(p)", [1]),
        ("torch.load(p, weights_only=False)", [1]),
        ("x = 1\ntorch.load(p, map_location='cpu')", [2]),
        ("torch.load(p, weights_only=True)", []),
        ("json.load(f)", []),
    ],
)
def test_the_scan_finds_unsafe_loads(source: str, expected: list[int]) -> None:
    assert unsafe_loads(source) == expected


def test_connections_beyond_this_machine_are_refused_here_and_in_subprocesses() -> None:
    with pytest.raises(ConnectionRefusedError, match=OFFLINE):
        socket.create_connection(("198.51.100.7", 443), timeout=1)
    probe = "import socket; socket.create_connection(('198.51.100.7', 443), timeout=1)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode != 0 and OFFLINE in result.stderr


def test_loopback_connections_still_work() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        with socket.create_connection(("localhost", port), timeout=5):
            pass
