"""SQLite's one writer of `tapkit serve`, in a process of its own (ingest.Ingest starts it).

    w = Writer("sqlite:///taps.db", group=64)
    inserted, duplicates = w.write((terminal, records, key, prev_mac, sync, bad))   # after commit
    w.close()

Why a process: in the server's process the sqlite3 module releases the GIL around every row it
steps and must take it back for the next one; with the HTTP threads busy (parsing, decrypting,
checking MACs) each retake waits for them (a GIL convoy: the writer ran about 10 times slower than
alone, ingest was 40 % of the plain bulk insert). Here it never waits.

The request's thread sends the batch as it decrypted it (one bytes object, pickled: a copy of it,
no row objects) with its MAC chain checked (store.inner_break, C speed) over a socket pair. Here
a reader thread takes each batch off the socket as it comes (the socket's buffer holds about two:
the server's requests never wait on it), checks the rest (store.Prepared: CRC, version, sequence)
and builds its rows, column by column into one parameter list (store._params: strided slices of
the batch, no object per record beyond the values bound); the main thread writes the batches into one transaction as they come, each
under its own savepoint (store.ingest_group), for as long as the next one comes within COLLECT_S
of the one before, up to `group`, then commits (one fsync) and answers each batch only after the
commit: an acknowledged batch is durable (synchronous=FULL). A burst of 40 batches is two or three
commits, not one each (its pages of the random-keyed indexes written once, not per commit).
A started process, not multiprocessing: no fork of a threaded server, no re-import of the
caller's main module. When the server goes, the writer reads end-of-file, commits what it has and
exits; when the writer goes, every waiting batch fails (not acked: the
terminal sends it again) and the next write starts a new one.
"""

import os
import queue
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

from host_tools.backoffice import store as store_mod

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
READY_S = 60  # seconds a new writer process has to import and open the store
# while batches keep coming less than this apart, they join the open transaction: fewer commits
# (an fsync each) for one more wait of this at the group's end
COLLECT_S = 0.002


class Writer:
    def __init__(self, db_url, group):
        self.db_url = db_url
        self.group = group
        self.lock = threading.Lock()  # the waiting batches (never held while sending)
        self.send_lock = threading.Lock()  # one message at a time on the socket
        self.proc = None
        self._start()

    def _start(self):
        import socket

        a, b = socket.socketpair()
        try:
            # this very package (not one the working directory would put first on sys.path), in
            # the working directory (a relative database path means the same file)
            code = "import sys; sys.path.insert(0, %r); from %s import main; main()" % (
                _ROOT,
                __name__,
            )
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, str(b.fileno()), self.db_url, str(self.group)],
                pass_fds=(b.fileno(),),
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        finally:
            b.close()
        self.conn = Connection(a.detach())
        # ready: imported and the store open (a first batch does not wait for the start-up; a
        # store that cannot open fails here, as Ingest's own open does)
        try:
            ready = self.conn.recv() if self.conn.poll(READY_S) else "no answer"
        except (EOFError, OSError):
            ready = f"it exited ({self.proc.wait()})"
        if ready != "ready":
            self.proc.kill()
            self.proc.wait()
            self.conn.close()
            raise store_mod.StoreError(f"the SQLite writer process did not start: {ready}")
        self.waiting = {}  # request id -> [done event, result]
        self.next = 0
        self.dead = None  # why this writer process is gone
        self.reader = threading.Thread(target=self._answers, args=(self.conn,), daemon=True)
        self.reader.start()

    def write(self, batch):
        """(inserted, duplicates) of one batch once committed, or its ChainError raised."""
        done = threading.Event()
        slot = [done, None]
        with self.send_lock:
            with self.lock:
                gone = self.dead is not None and self.dead != "closing"
            if gone:  # a new process for the next batches
                self._stop()
                self._start()
            with self.lock:
                i = self.next = self.next + 1
                self.waiting[i] = slot
                conn = self.conn
            try:
                conn.send((i, batch))
            except OSError:
                pass  # the reader sees the process gone and fails the batch
        done.wait()
        if isinstance(slot[1], BaseException):
            raise slot[1]
        return slot[1]

    def _answers(self, conn):
        while True:
            try:
                got = conn.recv()
            except (EOFError, OSError):
                break
            with self.lock:
                slots = [(self.waiting.pop(i), r) for i, r in got]
            for slot, r in slots:
                slot[1] = r
                slot[0].set()
        with self.lock:  # the process is gone: every batch still waiting fails (not acked)
            if conn is not self.conn:
                return
            self.dead = self.dead or "the SQLite writer process stopped"
            waiting, self.waiting = self.waiting, {}
        for slot in waiting.values():
            slot[1] = store_mod.StoreError(self.dead)
            slot[0].set()

    def _stop(self, timeout=30):
        try:
            self.conn.send(None)  # the writer finishes what it has, then exits
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(5)
        self.conn.close()

    def close(self):
        with self.lock:
            self.dead = "closing"
        with self.send_lock:
            self._stop()


def serve(conn, db_url, group):
    """The writer process: batches from `conn`, up to `group` per transaction; the answers of a
    group are sent after its commit."""
    try:
        store = store_mod.open_store(db_url)
    except Exception as e:  # noqa: BLE001 - said to the server, which refuses to start
        conn.send(f"{type(e).__name__}: {e}")
        return
    conn.send("ready")
    # a thread of its own reads the socket all the time: a batch sent while a group is being
    # written waits here, not in the socket (whose buffer holds about two), so the server's
    # requests never block on it and the next group takes every batch that came meanwhile
    inbox = queue.SimpleQueue()
    threading.Thread(target=_read, args=(conn, inbox), daemon=True).start()
    closing = []
    while not closing:
        first = inbox.get()
        if first is None:
            break
        ids, out = [], []  # the group's request ids; answers that need no commit
        try:
            if store is None:
                store = store_mod.open_store(db_url)
            results = store.ingest_group(_group(first, inbox, group, ids, out, closing))
        except Exception as e:  # noqa: BLE001 - the store failed: every batch of the group
            if not ids and not out:  # (it did not open: the first batch's answer)
                ids.append(first[0])
            results = [store_mod.StoreError(f"{type(e).__name__}: {e}")] * len(ids)
            if store is not None:
                try:
                    store.close()
                except Exception:  # noqa: BLE001
                    pass
                store = None
        out += zip(ids, results, strict=True)
        if out:
            try:
                conn.send(out)
            except (EOFError, OSError):
                break
    if store is not None:
        store.close()
    conn.close()


def _group(first, inbox, group, ids, refused, closing):
    """The batches of one transaction, from `first` on: each one that comes within COLLECT_S of
    the one before, up to `group` (their request ids into `ids`); one that _read refused goes to
    `refused` with its ChainError (answered with the group, nothing written); the server's None
    (it closes, or is gone) ends the group and, through `closing`, the writer."""
    msg = first
    while True:
        i, batch = msg
        if isinstance(batch, store_mod.ChainError):
            refused.append((i, batch))
        else:
            ids.append(i)
            yield batch
            if len(ids) >= group:
                return
        try:
            msg = inbox.get(timeout=COLLECT_S)
        except queue.Empty:
            return
        if msg is None:
            closing.append(True)
            return


def _read(conn, inbox):
    """The writer process's reader: every batch from the server, checked and turned into rows
    (store.Prepared: CRC, sequence, its own MAC chain at C speed; or its ChainError), into
    `inbox`; None at the end. It runs while the main thread's statement does (sqlite3 releases
    the GIL while SQLite steps it), so the next batch is ready when the last one is written."""
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            msg = None
        if msg is not None:
            i, (tid, recs, key, prev, sync, bad) = msg
            try:
                msg = i, (tid, store_mod.Prepared(tid, recs, key, bad), key, prev, sync)
            except store_mod.ChainError as e:
                msg = i, e
        inbox.put(msg)
        if msg is None:
            return


def main():
    """The writer process's entry (Writer starts it): socket fd, database URL, group."""
    serve(Connection(int(sys.argv[1])), sys.argv[2], int(sys.argv[3]))
