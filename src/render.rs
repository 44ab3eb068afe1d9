//! Text generated from the catalog: the mount's `README.md` and `catalog.csv`, and the
//! `medimg catalog` listing. Pure functions of the catalog, so they are the same on every mount.

use std::fmt::Write;

use crate::catalog::{Catalog, Dataset};

/// `MNT/README.md`: how to use the mount.
pub fn readme(c: &Catalog) -> String {
    let mut s = String::new();
    let readable = c
        .datasets
        .iter()
        .filter(|d| d.unsupported_reason().is_none())
        .count();
    let _ = writeln!(
        s,
        "# medimg\n\n\
         {} public medical image datasets ({} readable through this mount today), fetched from\n\
         their upstream hosts when a file is read and cached on local disk. Read-only.\n\n\
         ## Layout\n\n\
         ```\n\
         datasets/<id>/...                      each dataset's own files, as upstream ships them\n\
         modality/<Modality>/<organ>/<id>/...   the same datasets by modality, then organ\n\
         organ/<organ>/<Modality>/<id>/...      and by organ, then modality\n\
         catalog.csv                            one row per dataset\n\
         ```\n\n\
         A file reachable by several paths is one file (same inode), so `du` counts it once.\n\
         Listing a dataset the first time reads its archive's directory from upstream (a few\n\
         requests); after that, `ls`, `find` and `stat` never wait for the network. Reading a file\n\
         downloads the blocks of the archive it lives in; what was read stays cached.\n\n\
         Examples:\n\n\
         ```\n\
         ls modality/X-ray/lung/\n\
         cp -r datasets/<id>/train ./train\n\
         python train.py --data datasets/<id>/...   # torchvision ImageFolder works as on disk\n\
         ```\n\n\
         A read that fails with 'Input/output error' is explained in the daemon's log.\n",
        c.datasets.len(),
        readable
    );
    let _ = writeln!(
        s,
        "## Datasets\n\n| id | title | modality | organ | access | status |\n|---|---|---|---|---|---|"
    );
    for d in &c.datasets {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            d.id,
            d.title.replace('|', "/"),
            d.modality.join(", "),
            d.organ.join(", "),
            d.access.as_str(),
            status(d).replace('|', "/")
        );
    }
    s
}

/// Whether medimg can read the dataset, in a few words.
pub fn status(d: &Dataset) -> String {
    match d.unsupported_reason() {
        None => "readable".into(),
        Some(r) => format!("not readable yet: {r}"),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `MNT/catalog.csv`: one row per dataset.
pub fn catalog_csv(c: &Catalog) -> String {
    let mut s = String::from("id,title,modality,organ,task,images,license,access,homepage,path\n");
    for d in &c.datasets {
        let images = match &d.images_note {
            Some(unit) => format!("{} {unit}", d.images),
            None => d.images.to_string(),
        };
        let row = [
            d.id.clone(),
            d.title.clone(),
            d.modality.join(";"),
            d.organ.join(";"),
            d.task.clone(),
            images,
            d.license.clone(),
            d.access.as_str().to_string(),
            d.homepage.clone(),
            format!("datasets/{}", d.id),
        ];
        let line: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        s.push_str(&line.join(","));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_a_row_per_dataset_and_quotes_commas() {
        let c = Catalog::builtin().unwrap();
        let csv = catalog_csv(&c);
        assert_eq!(csv.lines().count(), 1 + c.datasets.len());
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert!(readme(&c).contains("| shenzhen-cxr |"));
    }
}
