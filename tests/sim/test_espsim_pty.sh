#!/bin/sh
# Smoke test of the espsim program on a pty: start it, open the link, SYNC,
# check the reply bytes, stop it with SIGTERM, check the flash file and that
# the link is gone.  TAP output.
ESPSIM="$1"
command -v python3 >/dev/null 2>&1 || { echo "1..0 # SKIP python3 not found"; exit 0; }
exec python3 - "$ESPSIM" <<'PY'
import os, select, signal, subprocess, sys, tempfile, time
espsim = sys.argv[1]
n = 0
failed = 0
def ok(cond, name):
    global n, failed
    n += 1
    if not cond:
        failed += 1
    print(("ok" if cond else "not ok") + " %d - %s" % (n, name), flush=True)

tmp = tempfile.mkdtemp(prefix="espsim-test-")
link = os.path.join(tmp, "ttyESP")
flash = os.path.join(tmp, "flash.bin")
p = subprocess.Popen([espsim, "--chip", "esp32", "--link", link, "--flash", flash,
                      "--mac", "24:0a:c4:11:22:33"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
try:
    line = p.stdout.readline().decode().strip()
    ok(line.startswith("/dev/pts/"), "prints the slave path when ready")
    ok(os.path.islink(link) and os.readlink(link) == line, "link points to the slave")
    ok(os.path.getsize(flash) == 4 << 20, "flash file created at 4 MB")
    with open(flash, "rb") as f:
        ok(f.read(4096) == b"\xff" * 4096, "new flash is blank")

    fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
    def read_for(sec):
        out = b""
        end = time.time() + sec
        while time.time() < end:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                out += os.read(fd, 4096)
        return out
    boot = read_for(0.3)
    ok(b"waiting for download" in boot and b"\xc0" not in boot, "boot banner, no frame bytes")
    sync = bytes([0xc0, 0, 8, 0x24, 0, 0, 0, 0, 0, 7, 7, 0x12, 0x20]) + b"\x55" * 32 + b"\xc0"
    os.write(fd, sync)
    rep = read_for(0.3)
    want = bytes([0xc0, 1, 8, 4, 0, 7, 7, 0x12, 0x20, 0, 0, 0, 0, 0xc0])
    ok(rep == want * 8, "8 exact SYNC replies")
    # READ_REG of the MAC words (esp32: 0x3ff5a004 / 0x3ff5a008)
    def read_reg(addr):
        os.write(fd, bytes([0xc0, 0, 0x0a, 4, 0, 0, 0, 0, 0]) + addr.to_bytes(4, "little") + b"\xc0")
        r = read_for(0.15)
        return int.from_bytes(r[5:9], "little") if len(r) >= 14 else None
    m0, m1 = read_reg(0x3ff5a004), read_reg(0x3ff5a008)
    mac = None if m0 is None or m1 is None else bytes([(m1 >> 8) & 255, m1 & 255, m0 >> 24, (m0 >> 16) & 255, (m0 >> 8) & 255, m0 & 255])
    ok(mac == bytes.fromhex("240ac4112233"), "--mac is what the eFuse words say")
    # write 1 KiB at 0x1000 through the ROM (attach, set params, begin, data)
    def cmd(op, data, chk=0):
        pl = bytes([0, op]) + len(data).to_bytes(2, "little") + chk.to_bytes(4, "little") + data
        enc = pl.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
        os.write(fd, b"\xc0" + enc + b"\xc0")
        return read_for(0.15)
    w = lambda *v: b"".join(x.to_bytes(4, "little") for x in v)
    cmd(0x0d, w(0, 0))
    cmd(0x0b, w(0, 4 << 20, 0x10000, 0x1000, 0x100, 0xffff))
    cmd(0x02, w(1024, 1, 1024, 0x1000))
    blk = bytes((i * 13) & 255 for i in range(1024))
    c = 0xef
    for b in blk:
        c ^= b
    r = cmd(0x03, w(1024, 0, 0, 0) + blk, c)
    ok(len(r) >= 14 and r[9] == 0, "FLASH_DATA accepted")
    # CHANGE_BAUDRATE: the answer at the old rate, then only the new rate works
    import termios
    r = cmd(0x0f, w(460800, 0))
    ok(len(r) >= 14 and r[2] == 0x0f and r[9] == 0, "CHANGE_BAUDRATE answered at 115200")
    ok(read_reg(0x40001000) != 0x00f01d83, "the old rate no longer works")
    attr = termios.tcgetattr(fd)
    attr[4] = attr[5] = termios.B460800
    termios.tcsetattr(fd, termios.TCSANOW, attr)
    read_for(0.1)
    ok(read_reg(0x40001000) == 0x00f01d83, "the rate the client sets on the port is used")
    os.close(fd)
finally:
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = -1
ok(rc == 0, "exits 0 on SIGTERM")
ok(not os.path.lexists(link), "link removed")
with open(flash, "rb") as f:
    f.seek(0x1000)
    ok(f.read(1024) == bytes((i * 13) & 255 for i in range(1024)), "flash file holds the written block")
os.remove(flash)
os.rmdir(tmp)
print("1..%d" % n)
sys.exit(1 if failed else 0)
PY
