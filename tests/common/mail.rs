//! Real mail servers for the ticket tests, on loopback: a private Dovecot (IMAP and POP3, one
//! instance per test with a generated config in a temporary directory, any password accepted
//! for any user, mail in maildirs there) and aiosmtpd as the SMTP receiver (it writes what it
//! receives into a maildir the test reads). Both are stopped when dropped. Every wait polls an
//! observable condition with a deadline.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password Dovecot accepts for every user.
pub const PASSWORD: &str = "mail-test-password";

/// How long a test waits for a mail to show up somewhere.
pub const MAIL_WAIT: Duration = Duration::from_secs(30);

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `check` until it returns `Some`, failing after `wait` with `what`.
pub async fn poll<T>(what: &str, wait: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    super::eventually_within(what, wait, || std::future::ready(check())).await
}

async fn wait_for_greeting(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut buf = [0u8; 64];
            use tokio::io::AsyncReadExt;
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await
            {
                if n > 0 {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Files in a maildir's `new/` and `cur/`.
fn maildir_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            files.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    files.sort();
    files
}

pub struct Dovecot {
    child: Child,
    dir: tempfile::TempDir,
    pub imap_port: u16,
    pub pop3_port: u16,
    /// IMAP over TLS; 0 when started without a certificate.
    pub imaps_port: u16,
}

/// A self-signed certificate for 127.0.0.1 (and localhost), made with openssl.
pub struct Certificate {
    _dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certificate {
    pub fn new() -> Certificate {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
            ])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            // A server certificate, not a CA: webpki refuses a CA as the end entity.
            .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(made.success(), "openssl made a certificate");
        Certificate {
            _dir: dir,
            cert,
            key,
        }
    }
}

impl Dovecot {
    pub async fn start() -> Dovecot {
        Dovecot::start_on(free_port(), free_port()).await
    }

    /// A Dovecot listening on the given loopback ports.
    pub async fn start_on(imap_port: u16, pop3_port: u16) -> Dovecot {
        Dovecot::launch(imap_port, pop3_port, None).await
    }

    /// A Dovecot offering STARTTLS (IMAP), STLS (POP3) and IMAPS with `certificate`.
    pub async fn start_tls(certificate: &Certificate) -> Dovecot {
        Dovecot::launch(free_port(), free_port(), Some(certificate)).await
    }

    async fn launch(imap_port: u16, pop3_port: u16, tls: Option<&Certificate>) -> Dovecot {
        let dir = tempfile::tempdir().expect("temporary directory");
        // Mail is written as `nobody`; the directory must be reachable for it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let mail = dir.path().join("mail");
        std::fs::create_dir(&mail).expect("mail dir");
        std::fs::set_permissions(&mail, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let d = dir.path().display();
        let imaps_port = if tls.is_some() { free_port() } else { 0 };
        let ssl = match tls {
            Some(c) => format!(
                "ssl = yes\nssl_cert = <{}\nssl_key = <{}",
                c.cert.display(),
                c.key.display()
            ),
            None => "ssl = no".into(),
        };
        let conf = format!(
            "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
             protocols = imap pop3\nlisten = 127.0.0.1\n{ssl}\nauth_mechanisms = plain\n\
             disable_plaintext_auth = no\nfirst_valid_uid = 1\nmail_location = maildir:{d}/mail/%u\n\
             passdb {{\n  driver = static\n  args = password={PASSWORD}\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={d}/mail/%u\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {imap_port}\n  }}\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps_port}\n    ssl = yes\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    address = 127.0.0.1\n    port = {pop3_port}\n  }}\n  inet_listener pop3s {{\n    port = 0\n  }}\n}}\n"
        );
        let conf_path = dir.path().join("dovecot.conf");
        std::fs::write(&conf_path, conf).expect("write dovecot.conf");
        let child = Command::new("/usr/sbin/dovecot")
            .args(["-F", "-c"])
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot starts (apt-get install dovecot-imapd dovecot-pop3d)");
        let dovecot = Dovecot {
            child,
            dir,
            imap_port,
            pop3_port,
            imaps_port,
        };
        wait_for_greeting(imap_port, "dovecot IMAP").await;
        wait_for_greeting(pop3_port, "dovecot POP3").await;
        dovecot
    }

    /// The maildir of `user`.
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user)
    }

    /// Messages in `user`'s INBOX (delivered files, whatever their flags).
    pub fn messages(&self, user: &str) -> usize {
        maildir_files(&self.maildir(user)).len()
    }

    /// The subjects of the messages in `user`'s INBOX, sorted.
    pub fn subjects(&self, user: &str) -> Vec<String> {
        let mut subjects: Vec<String> = maildir_files(&self.maildir(user))
            .iter()
            .filter_map(|path| {
                let raw = std::fs::read(path).ok()?;
                let text = String::from_utf8_lossy(&raw);
                let subject = text.lines().find_map(|l| l.strip_prefix("Subject: "))?;
                Some(subject.trim().to_owned())
            })
            .collect();
        subjects.sort();
        subjects
    }

    /// Messages in `user`'s INBOX carrying a keyword (Dovecot's maildir writes keywords as
    /// lowercase letters after `:2,` in the file name).
    pub fn keyworded(&self, user: &str) -> usize {
        maildir_files(&self.maildir(user))
            .iter()
            .filter(|path| {
                path.to_string_lossy()
                    .rsplit_once(":2,")
                    .is_some_and(|(_, flags)| flags.chars().any(|c| c.is_ascii_lowercase()))
            })
            .count()
    }

    /// Appends `raw` to `user`'s INBOX over IMAP, as a mail client or delivery agent would.
    pub async fn append(&self, user: &str, raw: &[u8]) {
        self.append_all(user, &[raw.to_vec()]).await;
    }

    /// Appends every message of `raws` over one IMAP connection.
    pub async fn append_all(&self, user: &str, raws: &[Vec<u8>]) {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.imap_port))
            .await
            .expect("connect to dovecot");
        let mut client = async_imap::Client::new(tcp);
        client
            .read_response()
            .await
            .expect("greeting")
            .expect("greeting");
        let mut session = client
            .login(user, PASSWORD)
            .await
            .map_err(|(e, _)| e)
            .expect("login");
        for raw in raws {
            session
                .append("INBOX", None, None, raw)
                .await
                .expect("append");
        }
        session.logout().await.expect("logout");
    }

    /// Writes `raw` straight into `user`'s maildir (as a local delivery agent does): the load
    /// test's fast path.
    pub fn deliver(&self, user: &str, name: &str, raw: &[u8]) {
        let dir = self.maildir(user);
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).expect("maildir");
        }
        // Dovecot works in it as `nobody`.
        for d in [
            dir.clone(),
            dir.join("new"),
            dir.join("cur"),
            dir.join("tmp"),
        ] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        }
        let tmp = dir.join("tmp").join(name);
        std::fs::write(&tmp, raw).expect("write mail");
        std::fs::rename(&tmp, dir.join("new").join(name)).expect("deliver mail");
    }

    /// `user`'s messages with the IMAP flag or keyword `flag` (over IMAP).
    pub async fn flagged(&self, user: &str, flag: &str) -> usize {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.imap_port))
            .await
            .expect("connect to dovecot");
        let mut client = async_imap::Client::new(tcp);
        client
            .read_response()
            .await
            .expect("greeting")
            .expect("greeting");
        let mut session = client
            .login(user, PASSWORD)
            .await
            .map_err(|(e, _)| e)
            .expect("login");
        session.select("INBOX").await.expect("select");
        let found = session
            .search(format!("KEYWORD {flag}"))
            .await
            .expect("search")
            .len();
        session.logout().await.expect("logout");
        found
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// aiosmtpd on a loopback port, delivering into a maildir.
pub struct SmtpReceiver {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

/// A mail the receiver got, parsed.
pub struct Received {
    pub raw: String,
}

impl Received {
    /// The first value of header `name` (unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.raw.split("\r\n\r\n").next().unwrap_or_default();
        let head = head.split("\n\n").next().unwrap_or_default();
        let unfolded = head
            .replace("\r\n ", " ")
            .replace("\n ", " ")
            .replace("\r\n\t", " ");
        unfolded.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

impl SmtpReceiver {
    pub async fn start() -> SmtpReceiver {
        SmtpReceiver::launch(None).await
    }

    /// A receiver that requires STARTTLS with `certificate`.
    pub async fn start_tls(certificate: &Certificate) -> SmtpReceiver {
        SmtpReceiver::launch(Some(certificate)).await
    }

    async fn launch(tls: Option<&Certificate>) -> SmtpReceiver {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let mut command = Command::new("aiosmtpd");
        command.args(["-n", "-l", &format!("127.0.0.1:{port}")]);
        if let Some(c) = tls {
            command
                .arg("--tlscert")
                .arg(&c.cert)
                .arg("--tlskey")
                .arg(&c.key);
        }
        let child = command
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("inbox"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd starts (apt-get install python3-aiosmtpd)");
        let receiver = SmtpReceiver { child, dir, port };
        wait_for_greeting(port, "aiosmtpd").await;
        receiver
    }

    /// Every mail received so far, in file-name order.
    pub fn received(&self) -> Vec<Received> {
        maildir_files(&self.dir.path().join("inbox"))
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(|raw| Received {
                raw: String::from_utf8_lossy(&raw).into_owned(),
            })
            .collect()
    }

    /// Waits for a received mail that satisfies `matches`.
    pub async fn expect(&self, what: &str, matches: impl Fn(&Received) -> bool) -> Received {
        poll(what, MAIL_WAIT, || {
            self.received().into_iter().find(|r| matches(r))
        })
        .await
    }
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An RFC 5322 message from `from` to `to`.
pub fn mail(
    from: &str,
    to: &str,
    subject: &str,
    message_id: &str,
    extra_headers: &str,
    body: &str,
) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\
         Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n{extra_headers}\r\n{body}\r\n"
    )
    .into_bytes()
}

/// The demo's email address in the config file: IMAP on `imap_port` (plain, delete after
/// fetch), answers through `smtp` if given.
pub fn support_account(
    imap_port: u16,
    smtp: Option<&SmtpReceiver>,
) -> vacd::channels::config::MailAccountConfig {
    use vacd::channels::config::{AfterFetch, MailAccountConfig, Protocol, Security, SmtpConfig};
    MailAccountConfig {
        address: SUPPORT.into(),
        protocol: Protocol::Imap,
        host: "127.0.0.1".into(),
        port: imap_port,
        security: Security::Plain,
        username: "support".into(),
        password: PASSWORD.into(),
        folder: "INBOX".into(),
        after_fetch: AfterFetch::Delete,
        smtp: smtp.map(|s| SmtpConfig {
            host: "127.0.0.1".into(),
            port: s.port,
            security: Security::Plain,
            username: None,
            password: None,
        }),
        auto_reply_template: None,
        ca_file: None,
    }
}

/// The demo's email address.
pub const SUPPORT: &str = "support@demo.vacd.test";

/// Waits until `/ready` lists the config-file account of the demo's email address as up (its
/// SMTP sender is then registered too).
pub async fn support_account_up(s: &super::TestServer) {
    let key = format!("file:{SUPPORT}");
    let deadline = Instant::now() + MAIL_WAIT;
    loop {
        let (_, ready) = s.call(reqwest::Method::GET, "/ready", None, None).await;
        if ready["channels"]["mail_accounts"][&key]["up"] == true {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the mail account never came up: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
