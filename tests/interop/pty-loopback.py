#!/usr/bin/env python3
"""A pty that echoes every byte back, for checking webserial-shim.mjs without
espsim.  Usage: pty-loopback.py LINK.  Points the symlink LINK at the slave,
prints the slave path on stdout, serves until SIGTERM/SIGINT.

The line "BAUD?\\n" is answered with "BAUD=<speed>\\n" (the slave's termios
speed as set by the shim's stty), so the test can see the baud plumbing.
"QUIET <n>\\n" is echoed, then the next n bytes are swallowed (after a pause
that lets the pty fill up) and answered with "GOT <n> <md5>\\n".
Like espsim, it keeps a slave fd open so the master never reads EIO between
a client's close and re-open."""
import hashlib
import os
import re
import pty
import select
import signal
import sys
import termios
import time
import tty

SPEEDS = {getattr(termios, n): int(n[1:]) for n in dir(termios)
          if n.startswith('B') and n[1:].isdigit()}


def main():
    link = sys.argv[1]
    master, slave = pty.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(path, link)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    print(path, flush=True)
    tail = b''
    quiet = md5_len = 0
    md5 = None
    try:
        while not stop:
            try:
                r, _, _ = select.select([master], [], [], 0.2)
            except InterruptedError:
                continue
            if not r:
                continue
            data = os.read(master, 65536)
            if quiet:
                take = data[:quiet]
                md5.update(take)
                quiet -= len(take)
                if quiet == 0:
                    data = b'GOT %d %s\n' % (md5_len, md5.hexdigest().encode())
                else:
                    continue
            tail = (tail + data)[-64:]
            m = re.search(rb'QUIET (\d+)\n$', tail)
            if m:
                # swallow the next N bytes, but only after the pty filled up
                quiet = md5_len = int(m.group(1))
                md5 = hashlib.md5()
                tail = b''
                time.sleep(0.3)
            elif tail.endswith(b'BAUD?\n'):
                speed = SPEEDS.get(termios.tcgetattr(master)[5], -1)
                data = data + b'BAUD=%d\n' % speed
            view = memoryview(data)
            while view:
                n = os.write(master, view)
                view = view[n:]
    finally:
        os.unlink(link)


if __name__ == '__main__':
    main()
