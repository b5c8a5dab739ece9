//! `cargo xtask ci | tidy | links | boundaries`: see the library's docs.

use std::process::ExitCode;

use xtask::{ci, Workspace};

fn main() -> anyhow::Result<ExitCode> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let workspace = Workspace::read()?;
    let check = match task.as_str() {
        "ci" => {
            return Ok(if ci::run(&workspace)? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        "tidy" => xtask::tidy_check,
        "links" => xtask::links_check,
        "boundaries" => xtask::boundaries_check,
        _ => {
            eprintln!("usage: cargo xtask ci | tidy | links | boundaries");
            return Ok(ExitCode::from(2));
        }
    };
    let problems = check(&workspace)?;
    for problem in &problems {
        println!("{problem}");
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
