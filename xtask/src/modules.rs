//! A crate's module tree and the references between its modules, read from the source.
//!
//! A module is a file (`relay.rs`, `relay/claim.rs`); an inline `mod tests { … }` belongs to
//! the file it sits in. A reference is a path that starts with `crate`, `super`, `self` or
//! the name of a child module, anywhere in the code, `use` or not, and in macro input too (a
//! token scan, not a parse): `crate::relay::Relay` inside `tokio::select!` is as much a
//! dependency as a `use`. Doc comments are strings to the scan, so an intra-doc link is not.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    str::FromStr,
};

use anyhow::{bail, Context};
use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

/// A module's path from the crate root: `[]` is the root, `["relay", "claim"]` is
/// `crate::relay::claim`.
pub type ModPath = Vec<String>;

/// One crate's modules, each with its file and what it refers to.
#[derive(Debug)]
pub struct ModuleTree {
    pub modules: BTreeMap<ModPath, Module>,
}

#[derive(Debug)]
pub struct Module {
    pub file: PathBuf,
    /// Paths this module's code names, from the crate root, with their line.
    pub references: Vec<(ModPath, usize)>,
    /// What its `use` items bring in, by the name they bring it in as: a child module that
    /// uses `super::Name` refers to whatever `Name` is in its parent.
    pub imports: BTreeMap<String, ModPath>,
}

impl ModuleTree {
    /// Reads the tree that `root` (a `lib.rs` or `main.rs`) declares.
    pub fn read(root: &Path) -> anyhow::Result<Self> {
        let mut tree = Self {
            modules: BTreeMap::new(),
        };
        tree.read_module(Vec::new(), root, true)?;
        Ok(tree)
    }

    fn read_module(&mut self, path: ModPath, file: &Path, owns_dir: bool) -> anyhow::Result<()> {
        let source =
            std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
        let tokens = TokenStream::from_str(&source)
            .map_err(|e| anyhow::anyhow!("{}: not Rust: {e}", file.display()))?;
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let children = declared_modules(&tokens);
        // `lib.rs`, `main.rs` and `mod.rs` keep their children beside them; `relay.rs` in
        // `relay/`.
        let dir = if owns_dir {
            file.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            file.with_extension("")
        };
        let mut scan = Scan {
            file_module: &path,
            children: &children,
            references: Vec::new(),
            imports: BTreeMap::new(),
        };
        scan.walk(&tokens, &path);
        self.modules.insert(
            path.clone(),
            Module {
                file: file.to_path_buf(),
                references: scan.references,
                imports: scan.imports,
            },
        );
        for child in &children {
            let flat = dir.join(format!("{child}.rs"));
            let nested = dir.join(child).join("mod.rs");
            let (file, owns_dir) = if flat.exists() {
                (flat, false)
            } else if nested.exists() {
                (nested, true)
            } else {
                bail!("{}: module {child} has no file", dir.display());
            };
            let mut child_path = path.clone();
            child_path.push(child.clone());
            self.read_module(child_path, &file, owns_dir)?;
        }
        Ok(())
    }

    /// The module a path lands in, through the `use` items on its way: `relay::Claim`, which
    /// `relay.rs` re-exports from `relay/claim.rs`, lands in `relay::claim`.
    pub fn module_of(&self, path: &[String]) -> ModPath {
        let mut path = path.to_vec();
        // Re-export chains are short; the bound stops an import that names itself.
        for _ in 0..16 {
            let module = self.longest_module(&path);
            let imported = path
                .get(module.len())
                .and_then(|name| self.modules[&module].imports.get(name))
                .filter(|target| target[..] != path[..=module.len()]);
            match imported {
                Some(target) => {
                    let mut through = target.clone();
                    through.extend_from_slice(&path[module.len() + 1..]);
                    path = through;
                }
                None => return module,
            }
        }
        self.longest_module(&path)
    }

    fn longest_module(&self, path: &[String]) -> ModPath {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|prefix| self.modules.contains_key(prefix))
            .unwrap_or_default()
    }
}

/// The names of `mod name;` declarations (file modules) at the top level of a file.
fn declared_modules(tokens: &[TokenTree]) -> Vec<String> {
    let mut names = Vec::new();
    for window in tokens.windows(3) {
        if let [TokenTree::Ident(kw), TokenTree::Ident(name), TokenTree::Punct(end)] = window {
            if kw == "mod" && end.as_char() == ';' {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// Collects the module paths named in one file.
struct Scan<'a> {
    file_module: &'a ModPath,
    children: &'a [String],
    references: Vec<(ModPath, usize)>,
    imports: BTreeMap<String, ModPath>,
}

impl Scan<'_> {
    /// `scope` is the module the tokens are in: the file's, or an inline module inside it.
    fn walk(&mut self, tokens: &[TokenTree], scope: &ModPath) {
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(group) => {
                    // `mod tests { … }`: its `super` is this file's module.
                    let inner: Vec<TokenTree> = group.stream().into_iter().collect();
                    let inline = match (i.checked_sub(2).map(|j| &tokens[j]), i.checked_sub(1)) {
                        (Some(TokenTree::Ident(kw)), Some(j)) if kw == "mod" => match &tokens[j] {
                            TokenTree::Ident(name) if group.delimiter() == Delimiter::Brace => {
                                Some(name.to_string())
                            }
                            _ => None,
                        },
                        _ => None,
                    };
                    match inline {
                        Some(name) => {
                            let mut inner_scope = scope.clone();
                            inner_scope.push(name);
                            self.walk(&inner, &inner_scope);
                        }
                        None => self.walk(&inner, scope),
                    }
                    i += 1;
                }
                TokenTree::Ident(ident) if !follows_path_separator(tokens, i) => {
                    let start = ident.to_string();
                    let base = match start.as_str() {
                        "crate" => Some(Vec::new()),
                        "self" => Some(scope.clone()),
                        "super" => Some(scope[..scope.len().saturating_sub(1)].to_vec()),
                        name if scope == self.file_module
                            && self.children.iter().any(|c| c == name) =>
                        {
                            let mut base = scope.clone();
                            base.push(start.clone());
                            Some(base)
                        }
                        _ => None,
                    };
                    let importing =
                        i > 0 && matches!(&tokens[i - 1], TokenTree::Ident(kw) if kw == "use");
                    match base {
                        Some(base) if is_path_separator(tokens, i + 1) => {
                            let line = ident.span().start().line;
                            let (end, leaf) = self.path(tokens, i + 1, base, line);
                            if let (true, Some(leaf)) = (importing, leaf) {
                                self.import(tokens, end, leaf);
                            }
                            i = end;
                        }
                        // `pub(crate)`, `use crate;`, a lone `self`: no path.
                        _ => i += 1,
                    }
                }
                _ => i += 1,
            }
        }
    }

    /// Reads `:: a :: b …` (or a `::{…}` use tree) from `i`, extending `base`; returns the
    /// index after the path, and the path when it is one (not a tree or a glob).
    fn path(
        &mut self,
        tokens: &[TokenTree],
        mut i: usize,
        mut base: ModPath,
        line: usize,
    ) -> (usize, Option<ModPath>) {
        while is_path_separator(tokens, i) {
            i += 2;
            match tokens.get(i) {
                Some(TokenTree::Ident(segment)) => {
                    match segment.to_string().as_str() {
                        "super" => {
                            base.pop();
                        }
                        "self" => {}
                        name => base.push(name.to_owned()),
                    }
                    i += 1;
                }
                Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Brace => {
                    // `use crate::{a::X, b::{c, d}}`: every branch is a path from `base`.
                    let inner: Vec<TokenTree> = group.stream().into_iter().collect();
                    for branch in
                        inner.split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ','))
                    {
                        self.branch(branch, &base, line);
                    }
                    return (i + 1, None);
                }
                Some(_) => {
                    // `::*` or `::<T>`: a reference to what came before, not a name.
                    self.references.push((base, line));
                    return (i, None);
                }
                None => break,
            }
        }
        self.references.push((base.clone(), line));
        (i, Some(base))
    }

    /// Records what a `use` brings in: its leaf's name, or the name after `as`.
    fn import(&mut self, tokens: &[TokenTree], after: usize, leaf: ModPath) {
        let alias = match (tokens.get(after), tokens.get(after + 1)) {
            (Some(TokenTree::Ident(kw)), Some(TokenTree::Ident(alias))) if kw == "as" => {
                Some(alias.to_string())
            }
            _ => None,
        };
        if let Some(name) = alias.or_else(|| leaf.last().cloned()) {
            if name != "_" {
                self.imports.insert(name, leaf);
            }
        }
    }

    fn branch(&mut self, tokens: &[TokenTree], base: &ModPath, line: usize) {
        let Some(TokenTree::Ident(first)) = tokens.first() else {
            // `*` or `{…}` directly: a reference to `base` itself.
            if !tokens.is_empty() {
                self.references.push((base.clone(), line));
            }
            return;
        };
        let mut path = base.clone();
        if first != "self" {
            path.push(first.to_string());
        }
        let (end, leaf) = self.path(tokens, 1, path, line);
        if let Some(leaf) = leaf {
            self.import(tokens, end, leaf);
        }
    }
}

fn is_path_separator(tokens: &[TokenTree], i: usize) -> bool {
    matches!(
        (tokens.get(i), tokens.get(i + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
    )
}

/// Whether the ident at `i` continues a path (`x::ident`), and so does not start one.
fn follows_path_separator(tokens: &[TokenTree], i: usize) -> bool {
    i >= 2 && is_path_separator(tokens, i - 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(source: &str, file_module: &[&str], children: &[&str]) -> Vec<String> {
        let file_module: ModPath = file_module.iter().map(|s| s.to_string()).collect();
        let children: Vec<String> = children.iter().map(|s| s.to_string()).collect();
        let tokens: Vec<TokenTree> = TokenStream::from_str(source).unwrap().into_iter().collect();
        let mut scan = Scan {
            file_module: &file_module,
            children: &children,
            references: Vec::new(),
            imports: BTreeMap::new(),
        };
        scan.walk(&tokens, &file_module);
        scan.references
            .into_iter()
            .map(|(p, _)| p.join("::"))
            .collect()
    }

    #[test]
    fn finds_paths_in_use_trees_code_and_macros() {
        let found = scan(
            "use crate::{kafka::Publisher, relay::{self, RelaySettings}};
             use super::Thing;
             fn f() { tokio::select! { _ = crate::nats::run() => {} } }
             fn g() -> settings::RelaySettings { todo!() }
             /// [`crate::docs::Only`] is a doc link, not a reference.
             mod tests { use super::*; }",
            &["relay", "claim"],
            &["settings"],
        );
        assert_eq!(
            found,
            [
                "kafka::Publisher",
                "relay",
                "relay::RelaySettings",
                "relay::Thing",
                "nats::run",
                "relay::claim::settings::RelaySettings",
                "relay::claim",
            ]
        );
    }

    #[test]
    fn a_path_inside_another_path_is_not_a_start() {
        assert!(scan("use rdkafka::config::ClientConfig;", &[], &["config"]).is_empty());
        assert!(scan("pub(crate) fn f() {}", &[], &[]).is_empty());
    }
}
