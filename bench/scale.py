#!/usr/bin/env python3
"""medimg at the real collection's scale: 2,000,000 files in 105 datasets.

Builds 105 stored zips on the fly (one holds a directory of 100,000 entries; the others about
18,300 files each in 20 directories), serves them from the bench's nginx on 127.0.0.1, and
measures: indexing every dataset from cold (requests and time), `medimg mount` to a working
`ls` with the index built, `ls -l` of the 100,000-entry directory after a restart with the page
cache dropped and again warm, `find` over all 2,000,000 files, the daemon's resident memory
after listing everything, and the index's size on disk. Reports; never fails on timing.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the upstream, mounts and timers of the main benchmark)

TOTAL = 2_000_000
DATASETS = 105
BIG_DIR = 100_000
MODALITIES = ["X-ray", "CT", "MRI", "OCT", "Ultrasound", "Endoscopy", "Fundus", "Dermoscopy",
              "Pathology", "Microscopy", "Mammography", "PET", "Photography", "Colposcopy"]
ORGANS = ["lung", "brain", "eye", "heart", "breast", "skin", "bone", "gastrointestinal", "blood",
          "kidney", "liver", "cervix", "teeth"]


def make_zips(data, total, datasets, big_dir):
    marker = os.path.join(data, f".made-{total}-{datasets}-{big_dir}")
    if os.path.exists(marker):
        return
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    per = (total - big_dir) // (datasets - 1)
    extra = (total - big_dir) - per * (datasets - 1)
    for d in range(datasets):
        path = os.path.join(data, f"s{d:03d}.zip")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            if d == 0:
                names = [f"big/img_{i:06d}.png" for i in range(big_dir)]
            else:
                n = per + (1 if d <= extra else 0)
                names = [f"part{i % 20:02d}/img_{i:06d}.png" for i in range(n)]
            for name in names:
                z.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), b"")
    open(marker, "w").close()


def rss_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/medimg-scale")
    ap.add_argument("--files", type=int, default=TOTAL)
    ap.add_argument("--server", choices=("nginx", "python"), default="nginx")
    a = ap.parse_args()
    data = os.path.join(a.work, "data")
    os.makedirs(a.work, exist_ok=True)
    print(f"# medimg at scale: {a.files} files in {DATASETS} datasets, "
          f"one directory of {BIG_DIR} entries", flush=True)
    t = time.monotonic()
    make_zips(data, a.files, DATASETS, BIG_DIR)
    print(f"zips ready in {time.monotonic() - t:.1f} s", flush=True)

    up = bench.upstream(a.server, a.work, data)
    m = bench.Medimg(a.work, up.port, "4MiB")
    with open(m.catalog, "w") as f:
        for d in range(DATASETS):
            f.write(f'[[dataset]]\nid = "s{d:03d}"\ntitle = "scale {d}"\n'
                    f'modality = ["{MODALITIES[d % len(MODALITIES)]}"]\n'
                    f'organ = ["{ORGANS[d % len(ORGANS)]}"]\naccess = "open"\n'
                    f'[[dataset.source]]\ntype = "http"\n'
                    f'url = "https://bench.example/s{d:03d}.zip"\n\n')
    m.wipe()

    print("cold: index every dataset", flush=True)
    m.start()
    t = time.monotonic()
    for d in range(DATASETS):
        os.listdir(os.path.join(m.mnt, "datasets", f"s{d:03d}"))
    index_s = time.monotonic() - t
    req, byt = up.snapshot()
    print(f"  indexed {DATASETS} datasets in {index_s:.1f} s: {req} requests, "
          f"{byt / 1e6:.1f} MB", flush=True)
    m.stop()

    print("restart with the index built", flush=True)
    bench.cold()
    ready = m.start()
    print(f"  mount to first ls: {ready:.3f} s (target < 1 s)", flush=True)
    big = os.path.join(m.mnt, "datasets", "s000", "big")
    s, _ = bench.timed(f"ls -l {big} > /dev/null")
    print(f"  ls -l of {BIG_DIR} entries, after restart, page cache dropped: {s:.3f} s "
          f"(target < 1 s)", flush=True)
    s, _ = bench.timed(f"ls -l {big} > /dev/null")
    print(f"  ls -l of {BIG_DIR} entries, warm: {s:.3f} s", flush=True)
    t = time.monotonic()
    out = subprocess.run(f"find {m.mnt}/datasets -type f | wc -l", shell=True,
                         capture_output=True, text=True).stdout.strip()
    print(f"  find over every dataset: {out} files in {time.monotonic() - t:.1f} s", flush=True)
    pid = m.proc.pid
    now_kb, peak_kb = rss_kb(pid, "VmRSS"), rss_kb(pid, "VmHWM")
    print(f"  daemon RSS after listing everything: {now_kb / 1024:.0f} MB "
          f"(peak {peak_kb / 1024:.0f} MB; target < 256 MB)", flush=True)
    req2, _ = up.snapshot()
    print(f"  upstream requests since the restart: {req2 - req}", flush=True)
    m.stop()
    idx = [os.path.join(m.cache, n) for n in ("index.sqlite", "index.sqlite-wal")]
    size = sum(os.path.getsize(p) for p in idx if os.path.exists(p))
    print(f"  index on disk: {size / 1e6:.0f} MB ({size / a.files:.0f} bytes per file)",
          flush=True)
    up.stop()


if __name__ == "__main__":
    main()
