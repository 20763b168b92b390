//! The WhatsApp bodies that `parley simulate` and the sandbox post (messages from a number, from a
//! user known only by a business-scoped id, statuses) parse with a current client SDK, pywa 4.5,
//! as an independent reader of Meta's shapes: it must see the sender's number, BSUID and name.
//!
//! Needs a Python with pywa: `PARLEY_PYWA_PYTHON` (`.ci/run` makes a venv and sets it). Without
//! it the test says so and checks nothing.

use std::process::Command;

use parley::sandbox::webhooks::{WhatsappNumber, business_scoped_id, whatsapp_image, whatsapp_status, whatsapp_text};

const NUMBER: WhatsappNumber<'static> = WhatsappNumber {
    business_account_id: "102290129340398",
    phone_number_id: "106540352242922",
    display_phone_number: "15550001111",
};
const PHONE: &str = "5511987654321";
const BSUID: &str = "US.13491208655302741918";

/// Reads each body with pywa and prints one line per body: kind, wa_id, bsuid, name, text.
const READER: &str = r#"
import json, sys
from pywa import WhatsApp, types
wa = WhatsApp(phone_id="106540352242922", token="unused", server=None, verify_token=None)
for line in sys.stdin:
    update = json.loads(line)
    value = update["entry"][0]["changes"][0]["value"]
    if "messages" in value:
        m = types.Message.from_update(client=wa, update=update)
        u = m.from_user
        print("message", u.wa_id, u.bsuid, u.name, m.text or m.caption, sep="|")
    else:
        s = types.MessageStatus.from_update(client=wa, update=update)
        u = s.from_user
        print("status", u.wa_id, u.bsuid, s.status.value, s.id, sep="|")
"#;

#[test]
fn simulated_and_sandbox_whatsapp_bodies_parse_with_pywa() {
    let Some(python) = std::env::var_os("PARLEY_PYWA_PYTHON") else {
        eprintln!("PARLEY_PYWA_PYTHON is not set (a Python with pywa 4.5): nothing checked");
        return;
    };
    let phone_bsuid = business_scoped_id(PHONE);
    let bodies = [
        whatsapp_text(&NUMBER, PHONE, "Ana Souza", "wamid.T1", "Chegou?", 1_718_000_000),
        whatsapp_text(&NUMBER, BSUID, "Ana Souza", "wamid.T2", "Oi", 1_718_000_001),
        whatsapp_image(&NUMBER, PHONE, "Ana Souza", "wamid.T3", "1479537139650973", Some("look"), 1_718_000_002),
        whatsapp_status(&NUMBER, "wamid.OUT1", "delivered", PHONE, 1_718_000_003),
        whatsapp_status(&NUMBER, "wamid.OUT2", "read", BSUID, 1_718_000_004),
    ];
    let mut child = Command::new(python)
        .args(["-c", READER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the pywa reader");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for body in &bodies {
            writeln!(stdin, "{body}").unwrap();
        }
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "pywa refused a body:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            format!("message|{PHONE}|{phone_bsuid}|Ana Souza|Chegou?"),
            format!("message|None|{BSUID}|Ana Souza|Oi"),
            format!("message|{PHONE}|{phone_bsuid}|Ana Souza|look"),
            format!("status|{PHONE}|{phone_bsuid}|delivered|wamid.OUT1"),
            format!("status|None|{BSUID}|read|wamid.OUT2"),
        ]
    );
}
