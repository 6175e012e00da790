"""Imported by every Python process the test suite starts (the suite puts this folder on
PYTHONPATH): connections to anything but this machine are refused, so a test that would
download weights or report to a tracking server fails instead of quietly needing the network."""

import ipaddress
import socket

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _is_local(address: object) -> bool:
    host = address[0] if isinstance(address, tuple) else None
    if host is None or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return False


def _refuse(self: socket.socket, address: object) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
        raise ConnectionRefusedError(f"the clipbert test suite runs offline: {address} refused")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _refuse(self, address)
    return _connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _refuse(self, address)
    return _connect_ex(self, address)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
