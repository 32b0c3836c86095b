#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target into tests/fuzz/corpus/<target>/.

    tests/fuzz/mkcorpus.py [ESPFS_MKIMAGE]

Seeds are built here from the formats' definitions (Espressif's serial
protocol and image/partition formats as documented in esptool's docs and
ESP-IDF's, the Improv serial spec), not copied from anywhere; images come
from espfs-mkimage (tests/mount/mkimage.c) when its path is given.  The
fuzzers grow their own corpora from these; re-run after a format change.
"""
import base64, hashlib, json, os, struct, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'corpus')


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def slip(payload):
    return b'\xc0' + payload.replace(b'\xdb', b'\xdb\xdd').replace(b'\xc0', b'\xdb\xdc') + b'\xc0'


def reply(op, value=0, data=b'', status=b'\x00\x00'):
    body = data + status
    return slip(struct.pack('<BBHI', 1, op, len(body), value) + body)


# ---- slip: first byte = buffer size/piece selector ----
put('slip', 'frames', b'\x3f' + reply(0x08) + b'noise\r\n' + reply(0x0a, 0x00f01d83))
put('slip', 'escapes', b'\x80' + slip(b'\xc0\xdb\xc0\xdb\xdb') + b'\xc0\xdb\xdc\xdb\xdd\xc0')
put('slip', 'broken', b'\x05' + b'\xc0\x01\xdb\x00\xc0\xc0\xc0ets Jun  8 2016\r\n' + slip(b'x' * 40))

# ---- loader: first byte = piece size; then, for each request the host
# sends, the chip's answer as a 2-byte little-endian length and the bytes ----
def answers(*replies):
    return b''.join(struct.pack('<H', len(r)) + r for r in replies)


sync = b''.join(reply(0x08, 0x20120707) for _ in range(8))
md5hex = b'0123456789abcdef0123456789abcdef'
esp32 = answers(sync, reply(0x14, 0, b'', b'\x01\x05'), reply(0x0a, 0x00f01d83),
                reply(0x0a, 0), reply(0x0a, 0x12345678), reply(0x0a, 0x0000abcd), reply(0x0a, 0),
                reply(0x0a, 0), reply(0x0a, 0), reply(0x0d), reply(0x0a, 0x001640ef),
                reply(0x0b), reply(0x13, 0, md5hex), reply(0xd2, 0, b'', b'\x01\x07'),
                reply(0x0e, 0, bytes(64)), reply(0x0a, 7), reply(0x02), reply(0x03), reply(0x04))
put('loader', 'esp32_rom', b'\x40' + esp32)
secinfo = struct.pack('<IB8sII', 0, 0, bytes(8), 9, 0)  # flags, key purposes, chip id 9 (S3), eco
put('loader', 'esp32s3_secinfo', b'\x07' + answers(sync, reply(0x14, 0, secinfo), reply(0x0a, 0x9),
                                                    reply(0x0a, 0), reply(0x0a, 0), reply(0x0d),
                                                    reply(0x0a, 0x001840ef)))
put('loader', 'stub_status', b'\xc7' + answers(sync[:30] + b'OHAI', reply(0x08, 0, b'', b'\x00\x00\x00\x00'),
                                                reply(0x0a, 0xfff0c101)))
put('loader', 'noise', b'\x01' + answers(b'ets Jun  8 2016 00:22:57\r\nrst:0x1 (POWERON_RESET)\r\n' + sync))

# ---- improv: packets ----
def improv(ptype, data):
    p = b'IMPROV' + bytes([1, ptype, len(data)]) + data
    return p + bytes([sum(p) & 0xff]) + b'\n'


def rpc_result(cmd, strings):
    body = b''.join(bytes([len(s)]) + s for s in strings)
    return improv(4, bytes([cmd, len(body)]) + body)


put('improv', 'state', improv(1, b'\x02'))
put('improv', 'error', improv(2, b'\x03'))
put('improv', 'info', rpc_result(3, [b'ESPHome', b'2024.6.6', b'ESP32', b'living-room']))
put('improv', 'scan', rpc_result(4, [b'HomeNet', b'-60', b'YES']))
put('improv', 'url', rpc_result(1, [b'http://192.168.1.20']))

# ---- improv_line: first byte = piece size; console text and packets, 0xFE = a pause ----
put('improv_line', 'boot', b'\x10' + b'I (312) boot: ESP-IDF v5.1\r\n' + improv(1, b'\x02') +
    b'[I][wifi:123]: connecting\r\n' + rpc_result(3, [b'ESPHome', b'1', b'ESP32', b'x']))
put('improv_line', 'cut', b'\x03' + improv(1, b'\x03')[:8] + b'\xfe' + improv(1, b'\x04') + b'x' * 300 + b'\n')
put('improv_line', 'bad_sum', b'\x61' + improv(1, b'\x02')[:-2] + b'\x00\n' + b'IMPROV\n')

# ---- partition tables (ESP-IDF: 32-byte rows, 0xAA50 magic, MD5 row, 0xFF end) ----
def pt_row(ptype, sub, off, size, label):
    return struct.pack('<HBBII16sI', 0x50aa, ptype, sub, off, size, label, 0)


rows = (pt_row(1, 2, 0x9000, 0x6000, b'nvs') + pt_row(1, 0, 0xf000, 0x2000, b'otadata') +
        pt_row(0, 0x10, 0x10000, 0x100000, b'ota_0') + pt_row(0, 0x11, 0x110000, 0x100000, b'ota_1'))
md5row = b'\xeb\xeb' + b'\xff' * 14 + hashlib.md5(rows).digest()
put('partition', 'ota', rows + md5row + b'\xff' * 32)
put('partition', 'factory', pt_row(1, 2, 0x9000, 0x6000, b'nvs') + pt_row(0, 0, 0x10000, 0x100000, b'factory') +
    b'\xff' * 64)
otadata = struct.pack('<I20sI', 3, b'\xff' * 20, 0x4743989a) + b'\xff' * 0xfe0
put('partition', 'otadata', otadata + struct.pack('<I20sI', 2, b'\xff' * 20, 0x55f63774) + b'\xff' * 0xfe0)

# ---- stub JSON ----
put('stub', 'esp32', json.dumps({'entry': 1074521560, 'text_start': 1074520064,
                                 'text': base64.b64encode(bytes(range(64))).decode(),
                                 'data_start': 1073605544,
                                 'data': base64.b64encode(b'\x01\x02\x03').decode()}).encode())
put('stub', 'no_data', b'{"entry":1,"text_start":2,"text":"AAEC"}')
put('stub', 'bad_b64', b'{"entry":1,"text_start":2,"text":"A=B=","data":"@@@@"}')

# ---- attrs: first byte % 5 picks the parser (0 erase, 1 wifi, 2 state, 3 name, 4 escape) ----
for i, (k, v) in enumerate([(0, b'0x9000 0x6000\n'), (0, b'1\n'), (0, b'0x1000 -0x1000'),
                            (0x80, b'4096 8192'),
                            (1, b'HomeNet:correct horse\n'),
                            (1, b'{"ssid":"Ne\\u0000t","password":"secret123"}'),
                            (1, b'{"ssid":"H\\u00e9","pass":"x"}'),
                            (2, b'reset\n'), (2, b'unplug-at 50'), (2, b'\x1b[2J\xff\n'),
                            (3, b'flash.bin.part'), (3, b'..'),
                            (4, b'\x20caf\xc3\xa9\n\xff\xed\xa0\x80\\')]):
    put('attrs', 'seed%02d' % i, bytes([k]) + v)

# ---- images: first byte = chip hint (2 = ESP32, 6 = ESP32-C3) ----
if len(sys.argv) > 1:
    mk = sys.argv[1]
    with tempfile.TemporaryDirectory() as t:
        for chip, hint in (('esp32', 2), ('esp32c3', 6)):
            for kind in ('app', 'bootloader', 'ptable'):
                p = os.path.join(t, 'img')
                subprocess.run([mk, chip, kind, p, 'seed'], check=True)
                put('image', '%s_%s' % (chip, kind), bytes([hint]) + open(p, 'rb').read())
        p = os.path.join(t, 'img')
        subprocess.run([mk, 'esp32', 'factory', p, 'seed'], check=True)
        # a factory image without its app: boot at 0x1000, table at 0x8000
        put('image', 'esp32_factory_head', b'\x02' + open(p, 'rb').read()[:0x9000])
