//! A real SMTP server on loopback for the tests: it speaks enough of RFC 5321 for a client to
//! deliver (EHLO/HELO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT), keeps what it
//! received, and can be told to refuse (451 at MAIL FROM) or to hang (accept and say nothing).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Accept,
    Refuse,
    Hang,
}

/// One delivered message.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

#[derive(Clone)]
pub struct SmtpServer {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    mode: Arc<Mutex<Mode>>,
    /// Count messages without keeping their bodies (for the benchmark's thousands).
    discard: Arc<std::sync::atomic::AtomicBool>,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = SmtpServer {
            port,
            received: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Accept)),
            discard: Arc::default(),
        };
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let _ = socket.set_nodelay(true);
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = s.session(socket).await;
                });
            }
        });
        server
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// For the benchmark (bench/loadgen includes this file).
    #[allow(dead_code)]
    pub fn discard_bodies(&self) {
        self.discard.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn set_mode(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }

    pub fn received_count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    async fn session(&self, socket: tokio::net::TcpStream) -> std::io::Result<()> {
        let mode = *self.mode.lock().unwrap();
        let (r, mut w) = socket.into_split();
        let mut r = BufReader::new(r);
        if mode == Mode::Hang {
            // Hold the connection open, silent, until the client gives up.
            tokio::time::sleep(std::time::Duration::from_secs(120)).await;
            return Ok(());
        }
        w.write_all(b"220 test.localhost ESMTP\r\n").await?;
        let (mut from, mut to) = (String::new(), Vec::new());
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let cmd = line.trim_end().to_owned();
            let upper = cmd.to_ascii_uppercase();
            if upper.starts_with("EHLO") {
                w.write_all(b"250-test.localhost\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n").await?;
            } else if upper.starts_with("HELO") {
                w.write_all(b"250 test.localhost\r\n").await?;
            } else if upper.starts_with("MAIL FROM:") {
                if *self.mode.lock().unwrap() == Mode::Refuse {
                    w.write_all(b"451 4.3.0 try again later\r\n").await?;
                    continue;
                }
                from = cmd[10..].trim().to_owned();
                to.clear();
                w.write_all(b"250 OK\r\n").await?;
            } else if upper.starts_with("RCPT TO:") {
                to.push(cmd[8..].trim().to_owned());
                w.write_all(b"250 OK\r\n").await?;
            } else if upper == "DATA" {
                w.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = Vec::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    if !self.discard.load(std::sync::atomic::Ordering::Relaxed) {
                        let l = line.strip_prefix('.').unwrap_or(&line);
                        data.extend_from_slice(l.as_bytes());
                    }
                }
                self.received.lock().unwrap().push(Received { from: from.clone(), to: to.clone(), data });
                w.write_all(b"250 OK queued\r\n").await?;
            } else if upper == "RSET" || upper == "NOOP" {
                w.write_all(b"250 OK\r\n").await?;
            } else if upper == "QUIT" {
                w.write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else {
                w.write_all(b"502 command not implemented\r\n").await?;
            }
        }
    }
}

/// A received e-mail, parsed.
#[derive(Debug, Clone)]
pub struct Mail {
    pub subject: String,
    pub message_id: String,
    pub to: String,
    pub text: String,
    pub html: String,
    /// (filename, content type, bytes)
    pub attachments: Vec<(String, String, Vec<u8>)>,
}

pub fn parse(data: &[u8]) -> Mail {
    use mailparse::MailHeaderMap;
    let m = mailparse::parse_mail(data).unwrap();
    let header = |k: &str| m.headers.get_first_value(k).unwrap_or_default();
    let mut mail = Mail {
        subject: header("Subject"),
        message_id: header("Message-ID"),
        to: header("To"),
        text: String::new(),
        html: String::new(),
        attachments: Vec::new(),
    };
    fn walk(p: &mailparse::ParsedMail<'_>, mail: &mut Mail) {
        let disposition = p.get_content_disposition();
        if disposition.disposition == mailparse::DispositionType::Attachment {
            let name = disposition.params.get("filename").cloned().unwrap_or_default();
            mail.attachments.push((name, p.ctype.mimetype.clone(), p.get_body_raw().unwrap()));
        } else if p.ctype.mimetype == "text/plain" {
            mail.text = p.get_body().unwrap();
        } else if p.ctype.mimetype == "text/html" {
            mail.html = p.get_body().unwrap();
        }
        for s in &p.subparts {
            walk(s, mail);
        }
    }
    walk(&m, &mut mail);
    mail
}

/// Whether the document tools (poppler's pdftotext and pdftoppm, zbar's zbarimg) are here; CI
/// requires them (`NETTERMS_REQUIRE_TOOLS=1`), a fresh machine may skip the checks that need them.
pub fn pdf_tools() -> bool {
    let have =
        ["pdftotext", "pdftoppm", "zbarimg"].iter().all(|t| std::process::Command::new(t).arg("-v").output().is_ok());
    if !have {
        assert!(
            std::env::var("NETTERMS_REQUIRE_TOOLS").is_err(),
            "pdftotext, pdftoppm and zbarimg are required (apt-get install poppler-utils zbar-tools)"
        );
        eprintln!("skipped: the PDF checks need pdftotext, pdftoppm and zbarimg (poppler-utils, zbar-tools)");
    }
    have
}

/// The text of a PDF, by pdftotext.
pub fn pdf_text(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = std::process::Command::new("pdftotext").arg("-layout").arg(&path).arg("-").output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// The QR codes on a PDF's first page: rendered by pdftoppm, read by zbarimg.
pub fn pdf_qr_codes(pdf: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.pdf");
    std::fs::write(&path, pdf).unwrap();
    let prefix = dir.path().join("page");
    let out = std::process::Command::new("pdftoppm")
        .args(["-png", "-r", "150", "-f", "1", "-l", "1", "-singlefile"])
        .arg(&path)
        .arg(&prefix)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new("zbarimg")
        .args(["--quiet", "--raw", "-Sbinary"])
        .arg(dir.path().join("page.png"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text.is_empty() { Vec::new() } else { vec![text] }
}
