//! Target stage tests: a batch of commands run by one `sh` splits back into each command's output and status.

use super::*;

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_batch_run_by_sh_splits_back_per_command() {
    let cmds = vec![
        argv(&["printf", "%s\\n", "one", "it's quoted"]),
        argv(&["sh", "-c", "echo to-stderr >&2; exit 3"]),
        argv(&["printf", "no newline"]),
        argv(&["true"]),
    ];
    let out = Command::new("sh")
        .arg("-c")
        .arg(batch_script(&cmds))
        .output()
        .unwrap();
    let ran = split_batch(
        cmds.len(),
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    )
    .unwrap();
    assert_eq!(ran.len(), 4);
    assert_eq!(
        (ran[0].status, ran[0].stdout.as_str()),
        (0, "one\nit's quoted\n")
    );
    assert_eq!(
        (
            ran[1].status,
            ran[1].stdout.as_str(),
            ran[1].stderr.as_str()
        ),
        (3, "", "to-stderr\n")
    );
    assert_eq!(ran[2].stdout, "no newline");
    assert_eq!((ran[3].status, ran[3].stdout.as_str()), (0, ""));
    assert!(ran[1].ok(&cmds[1]).is_err());
}

#[test]
fn a_cut_off_batch_is_not_split() {
    assert_eq!(
        split_batch(2, "out\n@@mtaspec-status 0\n", "\n@@mtaspec-end\n"),
        None
    );
}
