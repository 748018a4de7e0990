//! docs/getting-started.md shows this crate's files as they are.

use std::path::Path;

#[test]
fn the_getting_started_page_shows_these_files_verbatim() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(crate_dir.join("../../docs/getting-started.md")).unwrap();
    for (file, language) in [
        ("proto/counter.proto", "proto"),
        ("build.rs", "rust"),
        ("src/lib.rs", "rust"),
        ("tests/counter.rs", "rust"),
        ("src/main.rs", "rust"),
    ] {
        let text = std::fs::read_to_string(crate_dir.join(file)).unwrap();
        let block = format!("```{language}\n{text}```\n");
        assert!(
            page.contains(&block),
            "docs/getting-started.md does not show {file} as it is: copy it into the page"
        );
    }
}
