"""A network outage on loopback: a TCP proxy in front of a test's server that drops every
connection from a chosen request on (tests/test_gcs_workdir.py: mid-save to the bucket), or
answers chosen requests with an HTTP error of its own (a store that refuses a write)."""
import json
import socket
import threading


class Network:
    """127.0.0.1:`port` -> 127.0.0.1:`upstream`, byte for byte, until `cut_at(marker, n)`'s
    n-th request naming `marker` arrives: that request and every open connection are dropped
    and new ones closed on accept (a network outage; the test's own client, which talks to
    the server directly, is the network coming back)."""

    def __init__(self, upstream: int):
        self.upstream = upstream
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.down = threading.Event()
        self.marker, self.left = None, 0
        self.refusing, self.refused = None, 0
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_at(self, marker: bytes, n: int = 1) -> None:
        self.marker, self.left = marker, n

    def refuse(self, marker: bytes, status: int = 403) -> None:
        """Every request naming `marker` is answered `status` by the proxy (the server never
        sees it), as a store that refuses the write; other requests go through."""
        self.refusing, self.status = marker, status

    def heal(self) -> None:
        """The network is back: new connections go through again."""
        self.marker, self.left = None, 0
        self.down.clear()

    def close(self) -> None:
        self.server.close()
        self._drop()

    def _drop(self) -> None:
        with self._lock:
            for s in self._open:
                _close(s)
            self._open.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            with self._lock:
                self._open += [client, upstream]
            for src, dst, out in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(src, dst, out), daemon=True).start()

    def _pipe(self, src, dst, out: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if out and self.refusing and self.refusing in data:
                    self.refused += 1
                    _answer(src, self.status)
                    break
                if out:
                    if self.marker and self.marker in data:
                        self.left -= 1
                        if self.left == 0:
                            self.down.set()
                    if self.down.is_set():
                        break
                dst.sendall(data)
        except OSError:
            pass
        if self.down.is_set():
            self._drop()
        else:
            for s in (src, dst):
                _close(s)


def _answer(client: socket.socket, status: int) -> None:
    """An HTTP error in Cloud Storage's JSON form, then the rest of the request read and
    dropped (closing with unread bytes would reset the connection: a network error, not a
    refusal)."""
    body = json.dumps({"error": {"code": status, "message": "refused by tests/network.py"}})
    client.sendall(f"HTTP/1.1 {status} Refused\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode())
    client.settimeout(5)
    try:
        while client.recv(1 << 16):
            pass
    except OSError:
        pass


def _close(s: socket.socket) -> None:
    """Shut down, then close: a bare close leaves a peer blocked in recv on another thread
    (the emulator, mid-upload) waiting for ever, where shutdown sends it the FIN."""
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
