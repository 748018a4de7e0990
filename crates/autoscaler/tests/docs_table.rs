//! The simulation table in docs/kubernetes.md is what the code produces. To rewrite it after a
//! change of the algorithm: `CLOUDSTATE_UPDATE_DOCS=1 cargo test -p cloudstate-autoscaler --test docs_table`.

use cloudstate_autoscaler::simulation::table;

const START: &str = "<!-- autoscaler-simulation:start -->\n";
const END: &str = "<!-- autoscaler-simulation:end -->";

#[test]
fn the_docs_show_the_simulation_the_code_runs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/kubernetes.md");
    let docs = std::fs::read_to_string(path).expect("docs/kubernetes.md");
    let start = docs.find(START).expect("start marker") + START.len();
    let end = docs.find(END).expect("end marker");
    let expected = table();
    if std::env::var_os("CLOUDSTATE_UPDATE_DOCS").is_some() {
        let updated = format!("{}{}{}", &docs[..start], expected, &docs[end..]);
        std::fs::write(path, updated).expect("writing docs/kubernetes.md");
        return;
    }
    assert!(
        docs[start..end] == expected,
        "docs/kubernetes.md shows another simulation than the code runs; rewrite it with \
         CLOUDSTATE_UPDATE_DOCS=1 cargo test -p cloudstate-autoscaler --test docs_table"
    );
}
