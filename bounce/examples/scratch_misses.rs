use std::collections::HashMap;
fn main() {
    let root = "/work/shared/corpora/dsn/sisimai";
    let text = std::fs::read_to_string(format!("{root}/expected.tsv")).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let only = std::env::args().nth(1);
    for l in lines {
        let row: HashMap<&str, &str> = head.iter().copied().zip(l.split('\t')).collect();
        if row["format_class"] == "arf_rfc5965" || row["t_reason"].is_empty() {
            continue;
        }
        let sample = row["sample"];
        let bytes = std::fs::read(format!("{root}/bsd/{sample}")).unwrap();
        let Ok(d) = bounce::parse(bounce::split_mbox(&bytes)[0]) else {
            continue;
        };
        let cs = bounce::classify(&d);
        let addr = row["recipient"].trim();
        let hit = d
            .recipients()
            .zip(&cs)
            .find(|(r, _)| r.addresses().iter().any(|a| a.eq_ignore_ascii_case(addr)));
        let got = hit.map_or("(none)", |(_, c)| c.reason.sisimai());
        let want = row["t_reason"];
        if got == want {
            continue;
        }
        if let Some(o) = &only {
            if o != want && o != got {
                continue;
            }
        }
        let (diag, st, act, cmd) = hit
            .map(|(r, c)| {
                (
                    r.diagnostic_code
                        .as_ref()
                        .map(|d| d.value.raw.clone())
                        .or(r.text_reply.as_ref().map(|x| x.to_string()))
                        .unwrap_or_default(),
                    format!(
                        "{:?}/{:?}",
                        r.status.as_ref().map(|s| s.raw.clone()),
                        r.text_status.map(|s| s.to_string())
                    ),
                    r.action
                        .as_ref()
                        .map(|a| a.raw().to_string())
                        .unwrap_or_default(),
                    c.command.map(|c| c.as_str()).unwrap_or(""),
                )
            })
            .unwrap_or_default();
        let ev = hit.map(|(_, c)| c.evidence.to_string()).unwrap_or_default();
        println!("{want} -> {got} {sample} [{ev}] st={st} act={act} cmd={cmd} sis_cmd={} legacy={}\n    diag: {}\n    human: {}", row["smtp_command"], d.legacy,
            diag.chars().take(200).collect::<String>().replace('\n', " "),
            d.human_text.as_deref().unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ").chars().take(300).collect::<String>());
    }
}
