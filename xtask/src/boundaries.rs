//! The crate boundaries, from `cargo metadata`'s resolved graph (what is linked, by the
//! normal dependencies only: tests and build scripts may use more).
//!
//! - `outbox`, the pattern, links nothing of the web or the shop, and a broker client only
//!   through its broker's feature (every broker crate is an optional dependency, and nothing
//!   it always links pulls one in).
//! - No service links the test helpers (`testkit`).
//! - MongoDB only in invoice-service (its store) and the flow console (which reads it).

use std::collections::{BTreeMap, BTreeSet};

use cargo_metadata::{DependencyKind, Metadata, Package, PackageId};

/// Crates `outbox` must never link.
const NOT_IN_THE_PATTERN: [&str; 10] = [
    "axum",
    "hyper",
    "mongodb",
    "contracts",
    "service-kit",
    "testkit",
    "order-service",
    "inventory-service",
    "invoice-service",
    "outbox-processor",
];

/// Broker clients: `outbox` links them only with their feature.
const BROKER_CLIENTS: [&str; 3] = ["rdkafka", "rdkafka-sys", "async-nats"];

/// What the stack runs: none of them links the test helpers.
const SERVICES: [&str; 5] = [
    "order-service",
    "inventory-service",
    "invoice-service",
    "outbox-processor",
    "flow-console",
];

/// Which may link MongoDB.
const MONGODB_USERS: [&str; 2] = ["invoice-service", "flow-console"];

/// The violations, one per line.
pub fn check(metadata: &Metadata) -> anyhow::Result<Vec<String>> {
    let graph = Graph::new(metadata)?;
    let mut problems = Vec::new();

    let outbox = graph.package("outbox")?;
    for name in graph.linked(&outbox.id, |_| true) {
        if NOT_IN_THE_PATTERN.contains(&name.as_str()) {
            problems.push(format!("outbox links {name}"));
        }
    }
    let optional: BTreeSet<&str> = outbox
        .dependencies
        .iter()
        .filter(|d| d.optional)
        .map(|d| d.name.as_str())
        .collect();
    for client in BROKER_CLIENTS {
        let declared = outbox.dependencies.iter().find(|d| d.name == client);
        if declared.is_some_and(|d| !d.optional && d.kind == DependencyKind::Normal) {
            problems.push(format!(
                "outbox always links {client}: make it a feature's optional dependency"
            ));
        }
    }
    for name in graph.linked(&outbox.id, |dep| !optional.contains(dep)) {
        if BROKER_CLIENTS.contains(&name.as_str()) {
            problems.push(format!("outbox without its broker features links {name}"));
        }
    }
    for service in SERVICES {
        let linked = graph.linked(&graph.package(service)?.id, |_| true);
        if linked.contains("testkit") {
            problems.push(format!("{service} links the test helpers (testkit)"));
        }
        if linked.contains("mongodb") && !MONGODB_USERS.contains(&service) {
            problems.push(format!("{service} links MongoDB"));
        }
    }
    Ok(problems)
}

/// The resolved graph's normal edges, by package.
struct Graph<'a> {
    packages: BTreeMap<&'a PackageId, &'a Package>,
    normal: BTreeMap<&'a PackageId, Vec<&'a PackageId>>,
}

impl<'a> Graph<'a> {
    fn new(metadata: &'a Metadata) -> anyhow::Result<Self> {
        let resolve = metadata
            .resolve
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("cargo metadata resolved no graph"))?;
        let normal = resolve
            .nodes
            .iter()
            .map(|node| {
                let deps = node
                    .deps
                    .iter()
                    .filter(|d| d.dep_kinds.iter().any(|k| k.kind == DependencyKind::Normal))
                    .map(|d| &d.pkg)
                    .collect();
                (&node.id, deps)
            })
            .collect();
        let packages = metadata.packages.iter().map(|p| (&p.id, p)).collect();
        Ok(Self { packages, normal })
    }

    fn package(&self, name: &str) -> anyhow::Result<&'a Package> {
        self.packages
            .values()
            .copied()
            .find(|p| p.name.as_str() == name && p.source.is_none())
            .ok_or_else(|| anyhow::anyhow!("no workspace package {name}"))
    }

    /// The names of every package `root` links, starting only from its direct dependencies
    /// that `first` admits.
    fn linked(&self, root: &PackageId, first: impl Fn(&str) -> bool) -> BTreeSet<String> {
        let name = |id: &PackageId| self.packages[id].name.to_string();
        let mut seen: BTreeSet<&PackageId> = BTreeSet::new();
        let mut todo: Vec<&PackageId> = self.normal[root]
            .iter()
            .copied()
            .filter(|id| first(&name(id)))
            .collect();
        while let Some(id) = todo.pop() {
            if seen.insert(id) {
                todo.extend(self.normal.get(id).into_iter().flatten().copied());
            }
        }
        seen.into_iter().map(name).collect()
    }
}
