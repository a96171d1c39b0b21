//! Release files and packages are an outsider's bytes: whatever they hold, a reader answers
//! with concepts or an error that names the file, and never panics.

use super::{loinc, rxnorm, snomed};
use proptest::prelude::*;
use std::path::Path;

fn quiet(_: &str) {}

fn file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Lines made of the separators and fields these formats use, and anything else.
fn text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400),
        proptest::collection::vec(
            prop_oneof![
                Just(b'\t'),
                Just(b'|'),
                Just(b','),
                Just(b'"'),
                Just(b'\n'),
                Just(b'1'),
                Just(b'a')
            ],
            0..400
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_snomed_files_read_or_are_refused(c in text(), d in text(), r in text()) {
        let dir = tempfile::tempdir().unwrap();
        let files = snomed::Files {
            concepts: &file(dir.path(), "c", &c),
            descriptions: &file(dir.path(), "d", &d),
            relationships: &file(dir.path(), "r", &r),
            language: None,
        };
        if let Ok(release) = snomed::read(&files, None, &quiet) {
            // every parent link names codes of the release's own lines
            prop_assert!(release.concepts.len() <= c.split(|b| *b == b'\n').count());
        }
    }

    #[test]
    fn any_loinc_files_read_or_are_refused(t in text(), h in text()) {
        let dir = tempfile::tempdir().unwrap();
        let (table, hierarchy) = (file(dir.path(), "t", &t), file(dir.path(), "h", &h));
        let _ = loinc::read(&table, Some(&hierarchy), "1", &quiet);
    }

    #[test]
    fn any_rxnorm_files_read_or_are_refused(c in text(), r in text()) {
        let dir = tempfile::tempdir().unwrap();
        let (conso, rel) = (file(dir.path(), "c", &c), file(dir.path(), "r", &r));
        let _ = rxnorm::read(&conso, Some(&rel), "1", &quiet);
    }
}

#[test]
fn a_line_past_the_bound_is_refused_with_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"id\teffectiveTime\tactive\tmoduleId\tdefinitionStatusId\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', super::MAX_LINE_BYTES + 10));
    let c = file(dir.path(), "c", &bytes);
    let files = snomed::Files {
        concepts: &c,
        descriptions: &c,
        relationships: &c,
        language: None,
    };
    let e = snomed::read(&files, None, &quiet).unwrap_err().to_string();
    assert!(e.contains("line 2 is longer than"), "{e}");
}
