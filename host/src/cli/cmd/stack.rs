//! A thread's Docker stack: `iso up`, `down`, `logs`, `exec`, `compose`.

use crate::cli::output::{DIM, GREEN};
use crate::cli::spinner::Spinner;
use crate::cli::terminal::RawMode;
use crate::cli::{exit, CmdResult};
use crate::lifecycle::stack;
use crate::project::Project;

pub fn up(project: &Project, selector: &str, quiet: bool) -> CmdResult {
    let spinner = Spinner::new(quiet);
    let (t, plan, started) = stack::up(project, selector, &spinner)?;
    drop(spinner);
    for s in &started {
        anstream::println!("{}✓{} {} healthy ({} ms)  {}", GREEN.render(), GREEN.render_reset(), s.service, s.millis, s.container);
    }
    for (k, v) in &plan.exports {
        println!("  {k}={v}");
    }
    anstream::eprintln!("{}thread {} ({}): {} service(s) up{}", DIM.render(), t.id, t.name, started.len(), DIM.render_reset());
    Ok(exit::OK)
}

pub fn down(project: &Project, selector: &str) -> CmdResult {
    let (t, stopped) = stack::down(project, selector)?;
    for name in &stopped {
        println!("stopped {name}");
    }
    anstream::eprintln!(
        "{}thread {} ({}): {} container(s) stopped; `iso up {}` starts them again{}",
        DIM.render(),
        t.id,
        t.name,
        stopped.len(),
        t.id,
        DIM.render_reset()
    );
    Ok(exit::OK)
}

pub fn logs(project: &Project, selector: &str, service: Option<&str>, follow: bool, tail: Option<usize>) -> CmdResult {
    stack::logs(project, selector, service, follow, tail, &mut std::io::stdout().lock())?;
    Ok(exit::OK)
}

pub fn exec(project: &Project, selector: &str, service: &str, cmd: &[String]) -> CmdResult {
    use std::io::IsTerminal;
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let _raw = if tty { RawMode::enter() } else { None };
    let code = stack::exec(project, selector, service, cmd, tty)?;
    Ok(i32::try_from(code).unwrap_or(exit::ERROR))
}

pub fn compose(project: &Project, selector: &str) -> CmdResult {
    let (path, name) = stack::compose_export(project, selector)?;
    println!("{}", path.display());
    anstream::eprintln!("{}  docker-compose -p {name} -f {} logs{}", DIM.render(), path.display(), DIM.render_reset());
    Ok(exit::OK)
}
