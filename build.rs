//! Compiles the folders of capability data whose files are many and may grow (the v2-to-FHIR
//! IG's code system maps, `capability/terminology/`) into the binary, as `include_str!` lists:
//! a file dropped into the folder is served without a list to keep by hand, and the binary
//! never depends on where it was built.

use std::fmt::Write;
use std::path::Path;

fn list(dir: &str, ext: &str, name_of: impl Fn(&str) -> Option<String>) -> String {
    println!("cargo:rerun-if-changed={dir}");
    // the directory of this build, read when the script runs (a script built once may run for
    // another checkout sharing its target directory)
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest).join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    let mut out = String::from("&[\n");
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(name) = name_of(&file) else { continue };
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(out, "    ({name:?}, include_str!({:?})),", path.display()).unwrap();
    }
    out.push(']');
    out
}

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    // the IG names its sheets `HL7 Concept Map_ <table> - Sheet1.csv`
    let ig = list("capability/hl7v2/v2-to-fhir/codesystems", "csv", |f| {
        let f = f.strip_prefix("HL7 Concept Map_ ")?;
        Some(f.split(" - Sheet").next()?.trim().to_string())
    });
    let terminology = list("capability/terminology", "json", |f| Some(f.to_string()));
    let write = |file: &str, doc: &str, name: &str, list: &str| {
        let code = format!("/// {doc}\npub const {name}: &[(&str, &str)] = {list};\n");
        std::fs::write(Path::new(&out).join(file), code).expect("OUT_DIR is writable");
    };
    write(
        "ig_tables.rs",
        "Every table of the v2-to-FHIR IG's code system maps: (name, CSV).",
        "IG_TABLES",
        &ig,
    );
    write(
        "capability_terminology.rs",
        "The resources of `capability/terminology/`: (file name, JSON).",
        "FILES",
        &terminology,
    );
}
