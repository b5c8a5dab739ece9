//! Tidy: the shape of the code, checked like behaviour is.
//!
//! - **No import circles.** Within each crate, the children of a module must reference each
//!   other without a circle (`relay::claim` may use `relay::publish`, but not both ways), and
//!   so must the top-level modules. A parent and its own children are containment, not an
//!   import: `relay.rs` re-exports from `relay/claim.rs`, which uses `super::Relay`.
//! - **The core names no broker.** In `outbox`, no module outside `kafka` and `nats` refers
//!   to either: brokers are adapters that import the core, never the other way round.
//! - **Small files.** No file in `outbox/src` is over [`MAX_LINES`] lines.
//! - **One module-file style.** `relay.rs` beside `relay/`, never `relay/mod.rs`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::Context;

use crate::modules::{ModPath, ModuleTree};

/// The longest a file of the `outbox` crate may be.
pub const MAX_LINES: usize = 400;

/// The adapters of the `outbox` crate: what its core may not name.
const BROKER_MODULES: [&str; 2] = ["kafka", "nats"];

/// Every tidy rule over the crates whose library or binary roots are `roots`; the violations,
/// one per line.
pub fn check(workspace: &Path, roots: &[(String, PathBuf)]) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for (krate, root) in roots {
        let tree = ModuleTree::read(root).with_context(|| format!("crate {krate}"))?;
        problems.extend(circles(krate, &tree, workspace));
        if krate == "outbox" {
            problems.extend(core_names_no_broker(&tree, workspace));
        }
        for module in tree.modules.values() {
            if module.file.file_name().is_some_and(|n| n == "mod.rs") {
                problems.push(format!(
                    "{}: a mod.rs; name the file after its module, beside its directory",
                    relative(workspace, &module.file)
                ));
            }
            if krate == "outbox" {
                let lines = std::fs::read_to_string(&module.file)?.lines().count();
                if lines > MAX_LINES {
                    problems.push(format!(
                        "{}: {lines} lines, over {MAX_LINES}: split it along its concerns",
                        relative(workspace, &module.file)
                    ));
                }
            }
        }
    }
    Ok(problems)
}

/// An edge between two sibling modules, with where it was seen.
type Edges = BTreeMap<(ModPath, ModPath), String>;

/// The sibling-level import graph of a crate: for each reference from module S to module T,
/// the edge between the two children of their closest common ancestor that contain them.
fn sibling_edges(tree: &ModuleTree, workspace: &Path) -> Edges {
    let mut edges = Edges::new();
    for (source, module) in &tree.modules {
        for (path, line) in &module.references {
            let target = tree.module_of(path);
            let common = source
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            // One contains the other (or they are the same): not an import between siblings.
            if common == source.len() || common == target.len() {
                continue;
            }
            let (from, to) = (source[..=common].to_vec(), target[..=common].to_vec());
            edges
                .entry((from, to))
                .or_insert_with(|| format!("{}:{line}", relative(workspace, &module.file)));
        }
    }
    edges
}

/// Every circle among sibling modules, as the modules in it and one reference per step.
fn circles(krate: &str, tree: &ModuleTree, workspace: &Path) -> Vec<String> {
    let edges = sibling_edges(tree, workspace);
    let mut graph: BTreeMap<&ModPath, BTreeSet<&ModPath>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from).or_default().insert(to);
    }
    let mut problems = Vec::new();
    let mut reported: BTreeSet<BTreeSet<&ModPath>> = BTreeSet::new();
    for start in graph.keys() {
        let Some(cycle) = cycle_from(&graph, start) else {
            continue;
        };
        if !reported.insert(cycle.iter().copied().collect()) {
            continue;
        }
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|pair| {
                let seen = &edges[&(pair[0].clone(), pair[1].clone())];
                format!("{} → {} ({seen})", name(pair[0]), name(pair[1]))
            })
            .collect();
        problems.push(format!("{krate}: import circle: {}", steps.join(", ")));
    }
    problems
}

/// A path from `start` back to itself, if there is one (breadth first: the shortest).
fn cycle_from<'a>(
    graph: &BTreeMap<&'a ModPath, BTreeSet<&'a ModPath>>,
    start: &'a ModPath,
) -> Option<Vec<&'a ModPath>> {
    let mut came_from: BTreeMap<&ModPath, &ModPath> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &next in graph.get(node).into_iter().flatten() {
            if next == start {
                let mut cycle = vec![node];
                let mut at = node;
                while at != start {
                    at = came_from[at];
                    cycle.push(at);
                }
                cycle.reverse();
                cycle.push(start);
                return Some(cycle);
            }
            if next != start && !came_from.contains_key(next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

fn core_names_no_broker(tree: &ModuleTree, workspace: &Path) -> Vec<String> {
    let is_broker = |path: &[String]| {
        path.first()
            .is_some_and(|first| BROKER_MODULES.contains(&first.as_str()))
    };
    let mut problems = Vec::new();
    for (source, module) in &tree.modules {
        // The crate root declares the adapters; that is containment.
        if source.is_empty() || is_broker(source) {
            continue;
        }
        for (path, line) in &module.references {
            if is_broker(&tree.module_of(path)) {
                problems.push(format!(
                    "{}:{line}: the core module {} names the adapter {}",
                    relative(workspace, &module.file),
                    name(source),
                    path.join("::")
                ));
            }
        }
    }
    problems
}

fn name(path: &[String]) -> String {
    if path.is_empty() {
        "crate".into()
    } else {
        path.join("::")
    }
}

fn relative(workspace: &Path, file: &Path) -> String {
    file.strip_prefix(workspace)
        .unwrap_or(file)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ModPath {
        s.split("::").map(str::to_owned).collect()
    }

    #[test]
    fn finds_the_shortest_circle() {
        let (a, b, c, d) = (p("a"), p("b"), p("c"), p("d"));
        let mut graph: BTreeMap<&ModPath, BTreeSet<&ModPath>> = BTreeMap::new();
        graph.entry(&a).or_default().extend([&b, &d]);
        graph.entry(&b).or_default().insert(&c);
        graph.entry(&c).or_default().insert(&a);
        assert_eq!(cycle_from(&graph, &a), Some(vec![&a, &b, &c, &a]));
        assert_eq!(cycle_from(&graph, &d), None);
    }

    #[test]
    fn reads_circles_and_broker_names_from_real_files() {
        let dir = std::env::temp_dir().join(format!("xtask-tidy-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src/relay")).unwrap();
        let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
        write(
            "src/lib.rs",
            "pub mod relay; pub mod kafka; mod envelope; mod handler;",
        );
        write(
            "src/relay.rs",
            "mod claim; pub use claim::Claim; fn f() { crate::kafka::go() }",
        );
        write("src/relay/claim.rs", "pub struct Claim; use super::f;");
        write(
            "src/kafka.rs",
            "use crate::relay::Claim; mod a; mod b; pub use a::A; pub use b::B;",
        );
        std::fs::create_dir_all(dir.join("src/kafka")).unwrap();
        // A circle through the parent's re-exports is still a circle.
        write("src/kafka/a.rs", "use super::B; pub struct A;");
        write(
            "src/kafka/b.rs",
            "pub struct B; fn f() -> super::A { todo!() }",
        );
        write(
            "src/envelope.rs",
            "#[cfg(test)] mod tests { use crate::handler::H; }",
        );
        write("src/handler.rs", "use crate::envelope::E;");
        let roots = [("outbox".to_owned(), dir.join("src/lib.rs"))];
        let problems = check(&dir, &roots).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            problems,
            [
                "outbox: import circle: envelope → handler (src/envelope.rs:1), \
                 handler → envelope (src/handler.rs:1)",
                "outbox: import circle: kafka → relay (src/kafka.rs:1), relay → kafka (src/relay.rs:1)",
                "outbox: import circle: kafka::a → kafka::b (src/kafka/a.rs:1), \
                 kafka::b → kafka::a (src/kafka/b.rs:1)",
                "src/relay.rs:1: the core module relay names the adapter kafka::go",
            ]
        );
    }
}
