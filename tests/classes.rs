//! The classes view through real mounts: flat datasets whose labels are in a table (one label
//! and a split column; several labels joined by `|`; one-hot columns), read by torchvision's
//! `ImageFolder` as a training script reads them. The classes and the number of images per
//! class are the table's, the bytes the upstream's, each file the dataset's own (one inode,
//! counted once by `du`), rows naming a missing file are reported and skipped, and listing
//! the view after a restart asks the upstream nothing.
//!
//! `ImageFolder` is the real one: `.ci/run` installs torch and torchvision from PyPI. Where
//! they cannot be imported the ImageFolder checks are skipped with a loud message, and the
//! rest of each test still runs.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use common::*;

const BLOCK: &[&str] = &["--block-size", "64KiB"];

/// One image of a test dataset: its path in the archive, its bytes, its labels.
struct Image {
    path: String,
    data: Vec<u8>,
}

/// A flat dataset: images in a zip, a label table beside it, and the catalog entry that says
/// how to read it.
struct Flat {
    id: &'static str,
    images: Vec<Image>,
    /// What ImageFolder must find: `split/label` (or `label`) -> file names.
    want: BTreeMap<String, Vec<String>>,
    /// Names the table gives that the dataset does not have.
    missing: Vec<String>,
    entry: String,
}

fn source(path: &str) -> String {
    format!("[[dataset.source]]\ntype = \"http\"\nurl = \"https://data.example.org/{path}\"\n")
}

fn add(want: &mut BTreeMap<String, Vec<String>>, folder: String, name: &str) {
    want.entry(folder).or_default().push(name.to_string());
}

/// HAM10000's shape: images in two part folders, `image_id,dx,...` with a split column;
/// two rows name images the dataset does not have, one image has no row.
fn single_label(up: &Upstream) -> Flat {
    let mut images = Vec::new();
    let mut want = BTreeMap::new();
    let mut csv = String::from("lesion_id,image_id,dx,dx_type,split\n");
    for i in 0..25 {
        let part = if i < 12 { 1 } else { 2 };
        let name = format!("ISIC_{i:07}.png");
        images.push(Image {
            path: format!("HAM10000_images_part_{part}/{name}"),
            data: png(24, 24, i),
        });
        if i == 24 {
            continue; // no row: a file without a label
        }
        let dx = if i % 5 == 0 {
            "mel"
        } else if i % 3 == 0 {
            "bkl"
        } else {
            "nv"
        };
        let split = if i % 4 == 0 { "test" } else { "train" };
        csv.push_str(&format!("HAM_{i:07},ISIC_{i:07},{dx},histo,{split}\n"));
        add(&mut want, format!("{split}/{dx}"), &name);
    }
    csv.push_str("HAM_9,ISIC_9999998,nv,histo,train\nHAM_9,ISIC_9999999,mel,histo,test\n");
    up.put("/derm/images.zip", zip(&as_members(&images)), true);
    up.put("/derm/HAM10000_metadata.csv", csv.into_bytes(), true);
    let labels = "[[dataset.labels]]\ntable = \"HAM10000_metadata.csv\"\nimage = \"{image_id}.png\"\n\
                  label = \"dx\"\nsplit_column = \"split\"\n";
    Flat {
        id: "derm-single",
        images,
        want,
        missing: vec!["ISIC_9999998.png".into(), "ISIC_9999999.png".into()],
        entry: dataset_entry(
            "derm-single",
            "",
            &format!(
                "{}{}{labels}",
                source("derm/images.zip"),
                source("derm/HAM10000_metadata.csv")
            ),
        ),
    }
}

/// ChestX-ray14's shape: `Image Index,Finding Labels,...`, several findings joined by `|`,
/// `No Finding` a label of its own.
fn multi_label(up: &Upstream) -> Flat {
    let mut images = Vec::new();
    let mut want = BTreeMap::new();
    let mut csv = String::from("Image Index,Finding Labels,Follow-up #,Patient ID\n");
    let findings = ["Effusion", "Mass", "Atelectasis"];
    for i in 0..20u32 {
        let name = format!("{i:08}_000.png");
        images.push(Image {
            path: format!("images/{name}"),
            data: png(20, 20, 100 + i),
        });
        let labels: Vec<&str> = if i % 4 == 0 {
            vec!["No Finding"]
        } else if i % 2 == 0 {
            vec![findings[i as usize % 3], findings[(i as usize + 1) % 3]]
        } else {
            vec![findings[i as usize % 3]]
        };
        for l in &labels {
            add(&mut want, l.to_string(), &name);
        }
        csv.push_str(&format!("{name},{},0,{i}\n", labels.join("|")));
    }
    csv.push_str("00009999_000.png,Mass,0,9999\n");
    up.put("/cxr/images_001.zip", zip(&as_members(&images)), true);
    up.put("/cxr/Data_Entry_2017.csv", csv.into_bytes(), true);
    let labels = "[[dataset.labels]]\ntable = \"Data_Entry_2017.csv\"\nimage = \"images/{Image Index}\"\n\
                  label = \"Finding Labels\"\nseparator = \"|\"\n";
    Flat {
        id: "cxr-multi",
        images,
        want,
        missing: vec!["images/00009999_000.png".into()],
        entry: dataset_entry(
            "cxr-multi",
            "",
            &format!(
                "{}{}{labels}",
                source("cxr/images_001.zip"),
                source("cxr/Data_Entry_2017.csv")
            ),
        ),
    }
}

/// ISIC 2019's shape: `image,MEL,NV,BCC,UNK` of 1.0 and 0.0; one row has no label at all.
fn one_hot(up: &Upstream) -> Flat {
    let mut images = Vec::new();
    let mut want = BTreeMap::new();
    let mut csv = String::from("image,MEL,NV,BCC,UNK\n");
    let classes = ["MEL", "NV", "BCC"];
    for i in 0..16u32 {
        let id = format!("ISIC_{:07}", 50 + i);
        images.push(Image {
            path: format!("ISIC_2019_Training_Input/{id}.png"),
            data: png(16, 16, 200 + i),
        });
        let k = (i as usize * 7) % 3;
        let cells: Vec<&str> = (0..3)
            .map(|c| if c == k && i != 15 { "1.0" } else { "0.0" })
            .collect();
        csv.push_str(&format!("{id},{},0.0\n", cells.join(",")));
        if i != 15 {
            add(&mut want, classes[k].to_string(), &format!("{id}.png"));
        }
    }
    csv.push_str("ISIC_0099999,1.0,0.0,0.0,0.0\n");
    up.put(
        "/isic/ISIC_2019_Training_Input.zip",
        zip(&as_members(&images)),
        true,
    );
    up.put(
        "/isic/ISIC_2019_Training_GroundTruth.csv",
        csv.into_bytes(),
        true,
    );
    let labels = "[[dataset.labels]]\ntable = \"ISIC_2019_Training_GroundTruth.csv\"\n\
                  image = \"ISIC_2019_Training_Input/{image}.png\"\none_hot = [\"MEL\", \"NV\", \"BCC\", \"UNK\"]\n";
    Flat {
        id: "isic-onehot",
        images,
        want,
        missing: vec!["ISIC_2019_Training_Input/ISIC_0099999.png".into()],
        entry: dataset_entry(
            "isic-onehot",
            "",
            &format!(
                "{}{}{labels}",
                source("isic/ISIC_2019_Training_Input.zip"),
                source("isic/ISIC_2019_Training_GroundTruth.csv")
            ),
        ),
    }
}

fn as_members(images: &[Image]) -> Vec<(String, Vec<u8>, bool)> {
    images
        .iter()
        .enumerate()
        .map(|(i, im)| (im.path.clone(), im.data.clone(), i % 2 == 0))
        .collect()
}

/// Whether the real torchvision can be imported here; says loudly when it cannot.
fn torchvision() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import torchvision.datasets"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !!! torchvision cannot be imported by python3: the ImageFolder checks  !!!\n\
             !!! of this test are SKIPPED. `.ci/run` installs it (pip install torch !!!\n\
             !!! torchvision); run that, or install them, to run them.             !!!\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        );
    }
    ok
}

/// torchvision's ImageFolder over each root, as a training script builds it: its classes,
/// and per sample its class, path relative to the root, decoded size and the sha256 of its
/// bytes. With `load = false` only the dataset is built (the folders listed), nothing read.
const IMAGE_FOLDER: &str = r#"
import hashlib, json, os, sys
from torchvision.datasets import ImageFolder
load = sys.argv[1] == "load"
out = {}
for root in sys.argv[2:]:
    ds = ImageFolder(root)
    samples = []
    for i, (path, target) in enumerate(ds.samples):
        row = {"class": ds.classes[target], "path": os.path.relpath(path, root)}
        if load:
            img, t = ds[i]
            assert t == target
            with open(path, "rb") as f:
                row["sha256"] = hashlib.sha256(f.read()).hexdigest()
            row["size"] = list(img.size)
        samples.append(row)
    out[root] = {"classes": ds.classes, "samples": samples}
print(json.dumps(out))
"#;

fn image_folder(load: bool, roots: &[std::path::PathBuf]) -> serde_json::Value {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(IMAGE_FOLDER)
        .arg(if load { "load" } else { "list" })
        .args(roots)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ImageFolder failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The ImageFolder roots of a dataset's classes view and what each must hold: the splits'
/// folders when the table gives splits, else the view itself.
fn roots(
    mnt: &std::path::Path,
    f: &Flat,
) -> Vec<(std::path::PathBuf, BTreeMap<String, Vec<String>>)> {
    let mut by_root: BTreeMap<std::path::PathBuf, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (folder, names) in &f.want {
        let (root, class) = match folder.split_once('/') {
            Some((split, class)) => (mnt.join("classes").join(f.id).join(split), class),
            None => (mnt.join("classes").join(f.id), folder.as_str()),
        };
        let mut names = names.clone();
        names.sort();
        by_root
            .entry(root)
            .or_default()
            .insert(class.to_string(), names);
    }
    by_root.into_iter().collect()
}

#[test]
fn image_folder_reads_classes_as_the_tables_say_and_the_files_are_the_datasets_own() {
    let up = Upstream::start();
    let flats = [single_label(&up), multi_label(&up), one_hot(&up)];
    let catalog: String = flats.iter().map(|f| f.entry.as_str()).collect();
    let fx = Fixture::new(&up, &catalog, "");
    let m = fx.mount(BLOCK);
    let mnt = m.mnt.clone();

    let (_, out, _) = sh(&format!("ls {}/classes", mnt.display()));
    assert_eq!(out, "cxr-multi\nderm-single\nisic-onehot\n");
    for f in &flats {
        // datasets/<id>/ stays the upstream's files, exactly.
        let (code, out, err) = sh(&format!(
            "cd {}/datasets/{} && find . -type f | sort",
            mnt.display(),
            f.id
        ));
        assert_eq!(code, 0, "{err}");
        let mut want: Vec<String> = f.images.iter().map(|i| format!("./{}", i.path)).collect();
        want.push(format!(
            "./{}",
            f.entry
                .lines()
                .find_map(|l| l.strip_prefix("table = \""))
                .and_then(|t| t.strip_suffix('"'))
                .unwrap()
        ));
        want.sort();
        assert_eq!(out.lines().collect::<Vec<_>>(), want, "{}", f.id);
    }

    // torchvision's ImageFolder over each root: the table's classes, the table's count per
    // class, every file decoded, its bytes the upstream's.
    if torchvision() {
        for f in &flats {
            let by_name: BTreeMap<String, &Image> = f
                .images
                .iter()
                .map(|i| (i.path.rsplit('/').next().unwrap().to_string(), i))
                .collect();
            let roots = roots(&mnt, f);
            let paths: Vec<_> = roots.iter().map(|(r, _)| r.clone()).collect();
            let got = image_folder(true, &paths);
            for (root, want) in &roots {
                let g = &got[root.to_str().unwrap()];
                let classes: Vec<&str> = g["classes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap())
                    .collect();
                assert_eq!(
                    classes,
                    want.keys().map(String::as_str).collect::<Vec<_>>(),
                    "{}",
                    root.display()
                );
                let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for s in g["samples"].as_array().unwrap() {
                    let class = s["class"].as_str().unwrap();
                    let path = s["path"].as_str().unwrap();
                    let (dir, name) = path.split_once('/').unwrap();
                    assert_eq!(dir, class, "{path}");
                    let image = by_name[name];
                    assert_eq!(s["sha256"].as_str().unwrap(), sha256(&image.data), "{path}");
                    assert!(s["size"][0].as_u64().unwrap() >= 16, "{path} decoded");
                    seen.entry(class.to_string())
                        .or_default()
                        .push(name.to_string());
                }
                assert_eq!(&seen, want, "{}: files per class", root.display());
            }
        }
    }

    // Each file under classes/ is the dataset's own: one inode, its links counting every
    // name, and `du` counts it once.
    let f = &flats[1];
    let a = std::fs::metadata(mnt.join("datasets/cxr-multi/images/00000002_000.png")).unwrap();
    let b = std::fs::metadata(mnt.join("classes/cxr-multi/Atelectasis/00000002_000.png")).unwrap();
    let c = std::fs::metadata(mnt.join("classes/cxr-multi/Effusion/00000002_000.png")).unwrap();
    assert_eq!((a.ino(), a.dev()), (b.ino(), b.dev()));
    assert_eq!(a.ino(), c.ino());
    // datasets/, modality/X-ray/lung/, organ/lung/X-ray/, and its two labels.
    assert_eq!(a.nlink(), 5, "{}", f.id);
    let (_, du, _) = sh(&format!(
        "du -sb {m}/datasets {m}/classes | tail -1",
        m = mnt.display()
    ));
    assert_eq!(
        du.split_whitespace().next(),
        Some("0"),
        "classes/ repeats datasets/: {du}"
    );
    let (_, links, _) = sh(&format!(
        "find {}/datasets/cxr-multi -type f -links +4 | wc -l",
        mnt.display()
    ));
    assert_eq!(
        links.trim(),
        "5",
        "files with two labels have two more names"
    );

    // A row naming a missing file is reported (in about/<id>.md, and in the one log line of
    // its dataset, not a line per row) and skipped: it is in no folder.
    let log = m.log_text();
    for f in &flats {
        let about =
            std::fs::read_to_string(mnt.join("about").join(format!("{}.md", f.id))).unwrap();
        for missing in &f.missing {
            assert!(about.contains(missing.as_str()), "{}: {about}", f.id);
        }
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("classes/{}:", f.id)))
            .collect();
        assert_eq!(lines.len(), 1, "{}: one line:\n{log}", f.id);
        assert!(
            lines[0].contains("naming a missing file") && lines[0].contains(f.missing[0].as_str()),
            "{}",
            lines[0]
        );
        let (_, out, _) = sh(&format!(
            "find {}/classes/{} -name '*9999*' | wc -l",
            mnt.display(),
            f.id
        ));
        assert_eq!(out.trim(), "0", "{}: nothing is invented", f.id);
    }
    let about = std::fs::read_to_string(mnt.join("about/derm-single.md")).unwrap();
    assert!(
        about.contains("HAM10000_images_part_2/ISIC_0000024.png"),
        "a file without a label is reported: {about}"
    );
    assert!(about.contains("| train/nv |"), "{about}");
    let about = std::fs::read_to_string(mnt.join("about/isic-onehot.md")).unwrap();
    assert!(about.contains("give no label"), "{about}");
    let csv = std::fs::read_to_string(mnt.join("catalog.csv")).unwrap();
    assert!(csv.contains(",classes/isic-onehot\n"), "{csv}");
}

#[test]
fn a_listing_of_classes_after_a_restart_asks_the_upstream_nothing() {
    let up = Upstream::start();
    let flats = [single_label(&up), multi_label(&up)];
    let catalog: String = flats.iter().map(|f| f.entry.as_str()).collect();
    let fx = Fixture::new(&up, &catalog, "");
    let listing = |mnt: &std::path::Path| {
        let (code, out, err) = sh(&format!(
            "cd {} && find classes -printf '%p %i %n %s\\n' | sort",
            mnt.display()
        ));
        assert_eq!(code, 0, "{err}");
        out
    };
    let first = {
        let m = fx.mount(BLOCK);
        let out = listing(&m.mnt);
        assert!(
            out.contains("classes/derm-single/test/mel/ISIC_0000000.png"),
            "{out}"
        );
        assert!(
            out.contains("classes/cxr-multi/No Finding/00000000_000.png"),
            "{out}"
        );
        // No block stays cached: whatever the next run reads of a table costs requests.
        let cleared = medimg()
            .args(["cache", "--clear", "all", "--cache-dir"])
            .arg(fx.cache())
            .output()
            .unwrap();
        assert!(
            cleared.status.success(),
            "{}",
            String::from_utf8_lossy(&cleared.stderr)
        );
        assert_eq!(fx.cached_bytes(), 0);
        assert!(m.stop().success());
        out
    };
    let before = up.count();
    let m = fx.mount(BLOCK);
    assert_eq!(
        listing(&m.mnt),
        first,
        "the same tree, inodes, links and sizes"
    );
    if torchvision() {
        let roots = [
            m.mnt.join("classes/derm-single/train"),
            m.mnt.join("classes/derm-single/test"),
            m.mnt.join("classes/cxr-multi"),
        ];
        let got = image_folder(false, &roots);
        let n: usize = roots
            .iter()
            .map(|r| {
                got[r.to_str().unwrap()]["samples"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(n, 24 + flats[1].want.values().map(Vec::len).sum::<usize>());
    }
    assert_eq!(
        up.count(),
        before,
        "a listing after a restart asked the upstream: {:?}",
        &up.log()[before..]
    );
}
