//! Every relative link and anchor in the repository's Markdown resolves.
//!
//! A link to a file must name one that is tracked; `#anchor` must name a heading of the target
//! (or of the page itself), slugged as GitHub slugs headings, or an HTML `id`/`name`. Links
//! out of the repository (`https:`, `mailto:`) are not fetched: CI runs offline.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Component, Path, PathBuf},
};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// What a Markdown file links to and which anchors it offers.
#[derive(Debug, Default)]
struct Page {
    /// Link targets with their line.
    links: Vec<(String, usize)>,
    anchors: BTreeSet<String>,
}

/// Checks the links of every file in `files` (paths relative to `root`, as `git ls-files`
/// lists them); the broken ones, one per line.
pub fn check(root: &Path, files: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let tracked: BTreeSet<PathBuf> = files.iter().cloned().collect();
    let directories: BTreeSet<PathBuf> = files
        .iter()
        .flat_map(|f| f.ancestors().skip(1).map(Path::to_path_buf))
        .collect();
    let mut pages = BTreeMap::new();
    for file in files.iter().filter(|f| is_markdown(f)) {
        let text = std::fs::read_to_string(root.join(file))?;
        pages.insert(file.clone(), read_page(&text));
    }
    let mut broken = Vec::new();
    for (file, page) in &pages {
        for (link, line) in &page.links {
            if let Err(why) = resolve(file, link, &tracked, &directories, &pages) {
                broken.push(format!("{}:{line}: {link}: {why}", file.display()));
            }
        }
    }
    Ok(broken)
}

fn is_markdown(file: &Path) -> bool {
    file.extension().is_some_and(|e| e == "md")
}

fn resolve(
    file: &Path,
    link: &str,
    tracked: &BTreeSet<PathBuf>,
    directories: &BTreeSet<PathBuf>,
    pages: &BTreeMap<PathBuf, Page>,
) -> Result<(), String> {
    if link.contains("://") || link.starts_with("mailto:") {
        return Ok(());
    }
    let (target, anchor) = match link.split_once('#') {
        Some((target, anchor)) => (target, Some(anchor)),
        None => (link, None),
    };
    let target = if target.is_empty() {
        file.to_path_buf()
    } else {
        let joined = file.parent().unwrap_or(Path::new("")).join(target);
        normalize(&joined).ok_or("points outside the repository")?
    };
    if !tracked.contains(&target) && !directories.contains(&target) {
        return Err("no such file in the repository".into());
    }
    let Some(anchor) = anchor.filter(|a| !a.is_empty()) else {
        return Ok(());
    };
    match pages.get(&target) {
        Some(page) if page.anchors.contains(anchor) => Ok(()),
        Some(_) => Err(format!("no heading with the anchor #{anchor}")),
        // GitHub's line anchors (`file.rs#L10`) on source files.
        None if anchor.starts_with('L') => Ok(()),
        None => Err("an anchor into a file that is not Markdown".into()),
    }
}

/// `a/./b/../c` → `a/c`; `None` when it climbs above the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

fn read_page(text: &str) -> Page {
    let mut page = Page::default();
    let mut slugs = Slugs::default();
    let mut heading: Option<String> = None;
    let parser = Parser::new_ext(
        text,
        Options::ENABLE_TABLES | Options::ENABLE_HEADING_ATTRIBUTES,
    );
    for (event, range) in parser.into_offset_iter() {
        let line = text[..range.start].lines().count().max(1);
        match event {
            Event::Start(Tag::Heading { id, .. }) => {
                if let Some(id) = id {
                    page.anchors.insert(id.to_string());
                }
                heading = Some(String::new());
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(text) = heading.take() {
                    page.anchors.insert(slugs.slug(&text));
                }
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(heading) = heading.as_mut() {
                    heading.push_str(&t);
                }
            }
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                page.links.push((dest_url.to_string(), line));
            }
            Event::Html(html) | Event::InlineHtml(html) => {
                page.anchors.extend(html_ids(&html));
            }
            _ => {}
        }
    }
    page
}

/// `id="x"` and `name="x"` in a piece of HTML.
fn html_ids(html: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for attribute in ["id=\"", "name=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attribute) {
            rest = &rest[at + attribute.len()..];
            if let Some(end) = rest.find('"') {
                ids.push(rest[..end].to_owned());
            }
        }
    }
    ids
}

/// GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, and a
/// repeated slug numbered (`-1`, `-2`).
#[derive(Default)]
struct Slugs {
    seen: BTreeMap<String, usize>,
}

impl Slugs {
    fn slug(&mut self, heading: &str) -> String {
        let base: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let n = self.seen.entry(base.clone()).or_insert(0);
        let slug = if *n == 0 { base } else { format!("{base}-{n}") };
        *n += 1;
        slug
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_as_github_does() {
        let mut slugs = Slugs::default();
        assert_eq!(slugs.slug("Why an outbox?"), "why-an-outbox");
        assert_eq!(
            slugs.slug("The relay — outbox/src/relay.rs"),
            "the-relay--outboxsrcrelayrs"
        );
        assert_eq!(slugs.slug("Why an outbox"), "why-an-outbox-1");
    }

    #[test]
    fn reports_missing_files_and_anchors() {
        let files: Vec<PathBuf> = ["README.md", "docs/a.md", "outbox/src/lib.rs"]
            .map(PathBuf::from)
            .to_vec();
        let mut pages = BTreeMap::new();
        pages.insert(
            PathBuf::from("README.md"),
            read_page("# Top\n[a](docs/a.md#the-part) [b](docs/b.md) [c](#top) [d](#nope)\n"),
        );
        pages.insert(
            PathBuf::from("docs/a.md"),
            read_page("## The `part`\n[lib](../outbox/src/lib.rs) [up](../../x.md) [web](https://x.y/#q)\n"),
        );
        let tracked: BTreeSet<PathBuf> = files.iter().cloned().collect();
        let dirs = BTreeSet::new();
        let mut broken = Vec::new();
        for (file, page) in &pages {
            for (link, _) in &page.links {
                if resolve(file, link, &tracked, &dirs, &pages).is_err() {
                    broken.push(link.as_str());
                }
            }
        }
        assert_eq!(broken, ["docs/b.md", "#nope", "../../x.md"]);
    }
}
