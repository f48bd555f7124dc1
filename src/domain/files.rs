//! Files people send us (support attachments, dispute documents, merchants' invoices): what they
//! are by their first bytes, and a name that is safe to store, show and send back in a header.

/// The largest file a person uploads: attachments of support requests, the merchant's documents.
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;

/// The content type of a PDF, PNG or JPEG by its first bytes.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else {
        None
    }
}

/// Whether `bytes` is a whole PDF: its header first, its end-of-file marker at the end.
pub fn is_pdf(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(1024)..];
    (bytes.starts_with(b"%PDF-1.") || bytes.starts_with(b"%PDF-2.")) && tail.windows(5).any(|w| w == b"%%EOF")
}

/// The file extension of a sniffed content type.
pub fn extension(content_type: &str) -> &'static str {
    match content_type {
        "application/pdf" => "pdf",
        "image/png" => "png",
        _ => "jpg",
    }
}

/// A name safe to store, show and send back in `Content-Disposition`: the sender's name without
/// its directories and extension, cut to letters, digits, `-`, `_` and spaces (no dots, no path,
/// no line breaks), and the extension of what the file really is (`content_type`, sniffed) — an
/// `invoice.html` that is a PDF is served as `invoice.pdf`.
pub fn safe_name(name: &str, content_type: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let stem = match base.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => base,
    };
    let stem: String =
        stem.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ' ')).take(96).collect();
    let stem = stem.split_whitespace().collect::<Vec<_>>().join(" ");
    let stem = if stem.is_empty() { "attachment".to_owned() } else { stem };
    format!("{stem}.{}", extension(content_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_what_their_first_bytes_say() {
        assert_eq!(sniff(b"%PDF-1.7\n..."), Some("application/pdf"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff(b"<html>"), None);
        assert!(is_pdf(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"));
        assert!(!is_pdf(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj"), "truncated");
        assert!(!is_pdf(b"GIF89a %%EOF"));
    }

    #[test]
    fn names_lose_paths_line_breaks_and_false_extensions() {
        assert_eq!(safe_name("../../etc/passwd", "application/pdf"), "passwd.pdf");
        assert_eq!(safe_name("..\\evil\r\nX-Injected: 1.html", "application/pdf"), "evilX-Injected 1.pdf");
        assert_eq!(safe_name("Rechnung März 2027.PDF", "application/pdf"), "Rechnung Mrz 2027.pdf");
        assert_eq!(safe_name("photo.jpeg.html", "image/jpeg"), "photojpeg.jpg");
        assert_eq!(safe_name("", "image/png"), "attachment.png");
        assert_eq!(safe_name(".htaccess", "image/png"), "htaccess.png");
        assert_eq!(safe_name("\"quoted\";name.pdf", "application/pdf"), "quotedname.pdf");
        assert!(safe_name(&"x".repeat(500), "application/pdf").len() <= 100);
    }
}
