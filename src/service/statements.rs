//! Importing bank statements (camt.052/053/054): the whole document is read once to check it
//! (a malformed, hostile or truncated file books nothing), then read again and booked entry by
//! entry, a chunk of entries per transaction, while the reader streams — memory stays flat in
//! the file's size. Every entry is recorded once under its key (the bank's reference, else a
//! digest of the entry), so a second import of the same or an overlapping file books nothing
//! twice, whichever node runs it and whenever it was interrupted.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::Services;
use super::orders::OrderError;
use super::payments::{Part, receive};
use crate::domain::camt::{self, CamtError, Entry, Header, TxDetails};
use crate::store::payments::{self as store, NewEntry, StatementRow};
use crate::store::{StoreError, Tx};

/// Entries booked in one transaction.
const PER_TRANSACTION: usize = 100;
/// How often a chunk is tried again after losing a race (busy, or a concurrent duplicate).
const RETRIES: usize = 5;

/// What an import did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, ToSchema)]
pub struct ImportSummary {
    pub statement_id: uuid::Uuid,
    /// `camt.052`, `camt.053` or `camt.054`.
    pub kind: String,
    /// The message version, e.g. `camt.053.001.08`.
    pub version: String,
    /// Entries in the document.
    pub entries: u64,
    /// Buyer payments booked by this import.
    pub payments: u64,
    /// Of them, matched to invoices.
    pub matched: u64,
    /// Of them, held in the unmatched queue.
    pub unmatched: u64,
    /// Entries (or their payments) booked before, by an earlier import: nothing booked again.
    pub duplicates: u64,
    /// Returned direct debits booked.
    pub returns: u64,
    /// Batch entries whose transactions a later camt.054 will bring.
    pub awaiting_details: u64,
    /// Batch details kept for their batch entry, which has not arrived yet.
    pub details_held: u64,
    /// Entries that are no buyer payment (debits, returns of unknown collections).
    pub ignored: u64,
    /// Entries not booked by the bank yet (`PDNG`): imported when they are.
    pub pending: u64,
    /// Payouts to PSPs seen leaving the account (a debit with the payout's end-to-end id).
    pub payouts_paid: u64,
}

/// Why an import was refused (nothing was booked).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Statement(#[from] CamtError),
    #[error("the file cannot be read: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Order(#[from] OrderError),
}

impl From<StoreError> for ImportError {
    fn from(e: StoreError) -> ImportError {
        ImportError::Order(OrderError::Store(e))
    }
}

/// A document to import.
#[derive(Debug, Clone)]
pub enum Document {
    File(PathBuf),
    Bytes(bytes::Bytes),
}

impl Document {
    pub(crate) fn open(&self) -> std::io::Result<Box<dyn BufRead + Send>> {
        Ok(match self {
            Document::File(p) => {
                let f = std::fs::File::open(p)?;
                if f.metadata()?.len() > camt::MAX_BYTES {
                    return Err(std::io::Error::other(CamtError::TooLarge));
                }
                Box::new(BufReader::with_capacity(64 * 1024, f))
            }
            Document::Bytes(b) => Box::new(std::io::Cursor::new(b.clone())),
        })
    }
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn io_or_camt(e: std::io::Error) -> ImportError {
    match e.get_ref().and_then(|i| i.downcast_ref::<CamtError>()) {
        Some(c) => ImportError::Statement(c.clone()),
        None => ImportError::Io(e),
    }
}

/// Checks the whole document: its header, entry count and digest, or why it is refused.
async fn check(doc: &Document) -> Result<(Header, u32, String), ImportError> {
    let doc = doc.clone();
    tokio::task::spawn_blocking(move || {
        let mut hashing = Hashing { inner: doc.open().map_err(io_or_camt)?, hash: Sha256::new() };
        let (h, n) = camt::read(BufReader::with_capacity(64 * 1024, &mut hashing), |_, _| Ok::<_, CamtError>(()))?;
        // Whatever follows the root element was read by the parser; hash the rest too.
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io_or_camt)?;
        Ok((h, n, hex::encode(hashing.hash.finalize())))
    })
    .await
    .map_err(|e| ImportError::Io(std::io::Error::other(e.to_string())))?
}

/// Imports a statement: checks it, then books every entry. `source` says who brought it
/// (`api`, `cli`).
pub async fn import(s: &Services, doc: Document, source: &str) -> Result<ImportSummary, ImportError> {
    let (header, count, digest) = check(&doc).await?;
    let statement_id = uuid::Uuid::now_v7();
    let mut sum = ImportSummary {
        statement_id,
        kind: header.kind.as_str().into(),
        version: header.version.clone(),
        ..ImportSummary::default()
    };
    {
        let mut tx = s.db.begin().await?;
        let row = StatementRow { id: statement_id, kind: &sum.kind, version: &sum.version, digest: &digest, source };
        store::insert_statement(&mut tx, &row, s.clock.now());
        tx.commit().await?;
    }
    // Second pass: the reader streams entries through a bounded channel.
    let (send, mut recv) = tokio::sync::mpsc::channel::<Entry>(4 * PER_TRANSACTION);
    let reader = tokio::task::spawn_blocking(move || -> Result<(), ImportError> {
        let input = doc.open().map_err(io_or_camt)?;
        let r = camt::read(input, |_, e| {
            // A closed channel means the booking side stopped (it reports why).
            send.blocking_send(e).map_err(|_| ImportError::Io(std::io::Error::other("booking stopped")))
        });
        r.map(|_| ())
    });
    let mut chunk: Vec<(Entry, String)> = Vec::with_capacity(PER_TRANSACTION);
    let mut keys = Keys::default();
    let mut booking: Result<(), ImportError> = Ok(());
    while let Some(e) = recv.recv().await {
        let key = keys.key(&e);
        chunk.push((e, key));
        if chunk.len() == PER_TRANSACTION {
            booking = book_chunk(s, statement_id, &chunk, &mut sum).await;
            chunk.clear();
            if booking.is_err() {
                break;
            }
        }
    }
    if booking.is_ok() && !chunk.is_empty() {
        booking = book_chunk(s, statement_id, &chunk, &mut sum).await;
    }
    drop(recv);
    let read = reader.await.map_err(|e| ImportError::Io(std::io::Error::other(e.to_string())))?;
    booking?;
    read?;
    debug_assert_eq!(sum.entries, u64::from(count));
    let mut tx = s.db.begin().await?;
    crate::store::payments::set_statement_summary(&mut tx, statement_id, &crate::store::to_json(&sum)?).await?;
    tx.commit().await?;
    tracing::info!(
        statement_id = %statement_id, kind = %sum.kind, entries = sum.entries, payments = sum.payments,
        matched = sum.matched, unmatched = sum.unmatched, duplicates = sum.duplicates, "bank statement imported"
    );
    Ok(sum)
}

/// Books a chunk of entries in one transaction, tried again from the start when it loses a race
/// (the entries that then exist count as duplicates).
async fn book_chunk(
    s: &Services,
    statement: uuid::Uuid,
    chunk: &[(Entry, String)],
    sum: &mut ImportSummary,
) -> Result<(), ImportError> {
    let mut attempt = 0;
    loop {
        let mut part = ImportSummary::default();
        let mut tx = s.db.begin().await?;
        let mut r = Ok(());
        match fast_path(s, &mut tx, statement, chunk, &mut part).await {
            Ok(handled) => {
                for ((e, key), done) in chunk.iter().zip(handled) {
                    if done {
                        continue;
                    }
                    r = book_entry(s, &mut tx, statement, e, key, &mut part).await;
                    if r.is_err() {
                        break;
                    }
                }
            }
            Err(e) => r = Err(e),
        }
        let r = match r {
            Ok(()) => tx.commit().await.map_err(OrderError::Store),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => {
                add(sum, &part);
                return Ok(());
            }
            Err(OrderError::Store(e)) if e.is_retryable() && attempt < RETRIES => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt as u64)).await;
            }
            Err(OrderError::Conflict(_)) if attempt < RETRIES => {
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn add(sum: &mut ImportSummary, p: &ImportSummary) {
    sum.entries += p.entries;
    sum.payments += p.payments;
    sum.matched += p.matched;
    sum.unmatched += p.unmatched;
    sum.duplicates += p.duplicates;
    sum.returns += p.returns;
    sum.awaiting_details += p.awaiting_details;
    sum.details_held += p.details_held;
    sum.ignored += p.ignored;
    sum.pending += p.pending;
    sum.payouts_paid += p.payouts_paid;
}

/// An import, as the operator sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatementView {
    pub statement_id: uuid::Uuid,
    /// `camt.053`, `camt.054` or `camt.052`.
    pub kind: String,
    pub version: String,
    /// `api` or `cli`.
    pub source: String,
    /// `complete`; `incomplete`: the import did not finish (it is running, or it was
    /// interrupted — importing the same file again books the rest, and nothing twice);
    /// `completed_later`: interrupted, and a later import of the same file finished it.
    pub state: String,
    /// The import that finished this one's work, when `completed_later`.
    pub completed_by: Option<uuid::Uuid>,
    /// What it booked, once complete.
    pub summary: Option<ImportSummary>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The imports, newest first.
pub async fn list(
    s: &Services,
    starting_after: Option<uuid::Uuid>,
    limit: i64,
) -> Result<(Vec<StatementView>, bool), OrderError> {
    let mut conn = s.db.conn().await?;
    let mut rows = store::list_statements(&mut conn, starting_after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let views = rows
        .into_iter()
        .map(|r| {
            let summary: Option<ImportSummary> = serde_json::from_str(&r.summary).ok();
            StatementView {
                statement_id: r.id,
                kind: r.kind,
                version: r.version,
                source: r.source,
                state: match (&summary, r.completed_by) {
                    (Some(_), _) => "complete",
                    (None, Some(_)) => "completed_later",
                    (None, None) => "incomplete",
                }
                .to_owned(),
                completed_by: if summary.is_some() { None } else { r.completed_by },
                summary,
                created_at: r.created_at,
            }
        })
        .collect();
    Ok((views, more))
}

/// An entry's key, with `occurrence`, how many entries of the same key came before it in the
/// same document (so two equal payments on one day stay two, and a later document with the same
/// entries books none of them again).
///
/// With the bank's reference: the reference on the account together with what the entry books
/// (direction, currency, amount, booking date) — banks repeat references (PostFinance gives two
/// payments one, GLS a return and a credit), so the reference alone would drop real payments.
/// The transactions are left out there: a statement may carry a booking without the details its
/// notification gave, and must still find the notification's entry. Without a reference: a
/// digest of what the booking is — account, amount, direction, dates and transactions, not where
/// it stands in the document nor what differs between a notification and the statement
/// (statement id, entry reference, status, additional text).
pub fn entry_key(e: &Entry, occurrence: u32) -> String {
    let account = e.account.as_deref().unwrap_or("");
    if let Some(r) = &e.bank_ref {
        let direction = if e.credit { "C" } else { "D" };
        let booked = e.booking_date.map(|d| d.to_string()).unwrap_or_default();
        return format!("ref:{account}:{r}:{direction}:{}{}:{booked}#{occurrence}", e.currency, e.amount);
    }
    format!("{}#{occurrence}", entry_digest(e))
}

/// The digest of an entry without a bank reference (see [`entry_key`]).
pub fn entry_digest(e: &Entry) -> String {
    let mut h = Sha256::new();
    let mut field = |s: &str| {
        h.update(s.as_bytes());
        h.update([0x1f]);
    };
    field(e.account.as_deref().unwrap_or(""));
    field(&e.currency);
    field(&e.amount.to_string());
    field(if e.credit { "C" } else { "D" });
    field(if e.reversal { "R" } else { "" });
    field(&e.booking_date.map(|d| d.to_string()).unwrap_or_default());
    field(&e.value_date.map(|d| d.to_string()).unwrap_or_default());
    for t in &e.transactions {
        field(&serde_json::to_string(t).unwrap_or_default());
    }
    format!("digest:{}", hex::encode(h.finalize()))
}

/// Keys a document's entries as they stream in, each with the number of entries of the same key
/// before it.
#[derive(Default)]
struct Keys {
    seen: std::collections::HashMap<String, u32>,
}

impl Keys {
    fn key(&mut self, e: &Entry) -> String {
        let n = self.seen.entry(entry_key(e, 0)).or_insert(0);
        let key = entry_key(e, *n);
        *n += 1;
        key
    }
}

/// How an entry's money divides into payments.
enum Split {
    Parts(Vec<Part>),
    /// A batch whose transactions come later (camt.054).
    NeedsDetails,
}

fn split(e: &Entry) -> Split {
    let detailed: Vec<&TxDetails> = e.transactions.iter().filter(|t| !t.is_bare()).collect();
    let batch = e.batch_count.unwrap_or(0);
    if batch > 1 && (detailed.len() as u64) < u64::from(batch) {
        return Split::NeedsDetails;
    }
    Split::Parts(parts_for(e, detailed.into_iter().cloned().collect()))
}

/// The payments `txs` make of entry `e`: one each when their amounts add up to the entry's,
/// else one of the whole entry (with every reference the transactions carry).
fn parts_for(e: &Entry, txs: Vec<TxDetails>) -> Vec<Part> {
    let part = |amount: i64, tx: TxDetails| Part {
        amount,
        currency: e.currency.clone(),
        tx,
        account: e.account.clone(),
        info: e.info.clone(),
        booking_date: e.booking_date.or(e.value_date).map(|d| d.to_string()),
    };
    if txs.len() <= 1 {
        return vec![part(e.amount, txs.into_iter().next().unwrap_or_default())];
    }
    let each: Option<i64> = txs
        .iter()
        .map(|t| {
            let same = t.currency.as_deref().is_none_or(|c| c == e.currency) && t.credit != Some(false);
            t.amount.filter(|_| same)
        })
        .try_fold(0i64, |acc, a| a.and_then(|a| acc.checked_add(a)));
    if each == Some(e.amount) {
        return txs.into_iter().map(|t| part(t.amount.unwrap_or(0), t)).collect();
    }
    let mut merged = TxDetails::default();
    for t in txs {
        merged.structured_refs.extend(t.structured_refs);
        merged.unstructured.extend(t.unstructured);
        merged.debtor_name = merged.debtor_name.or(t.debtor_name);
    }
    merged.unstructured.push("(the entry's transactions do not add up to it)".into());
    vec![part(e.amount, merged)]
}

/// How an entry is filed: its state, the details it keeps, a note.
struct Filed<'a>(&'a str, Option<String>, Option<&'a str>);

/// Records entry `e` under `key` as `filed`; its id if this call recorded it (`None`: known).
async fn claim(
    tx: &mut Tx,
    e: &Entry,
    key: &str,
    statement: uuid::Uuid,
    filed: Filed<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<uuid::Uuid>, OrderError> {
    let Filed(state, details, note) = filed;
    let id = uuid::Uuid::now_v7();
    let row = NewEntry {
        id,
        key,
        statement_id: statement,
        account: e.account.as_deref(),
        currency: &e.currency,
        amount: e.amount,
        credit: e.credit,
        status: &e.status,
        state,
        booking_date: e.booking_date.map(|d| d.to_string()),
        details,
        note: note.map(str::to_owned),
    };
    Ok(store::claim_entry(tx, &row, now).await?.then_some(id))
}

async fn book_parts(
    s: &Services,
    tx: &mut Tx,
    entry_id: uuid::Uuid,
    key: &str,
    parts: &[Part],
    sum: &mut ImportSummary,
) -> Result<(), OrderError> {
    for (i, p) in parts.iter().enumerate() {
        match receive(s, tx, entry_id, format!("{key}#{i}"), p, None).await? {
            Some(v) => {
                sum.payments += 1;
                if v.state == "matched" {
                    sum.matched += 1;
                } else {
                    sum.unmatched += 1;
                }
            }
            None => sum.duplicates += 1,
        }
    }
    Ok(())
}

/// Books one entry (see the module's comment for what each kind of entry does).
async fn book_entry(
    s: &Services,
    tx: &mut Tx,
    statement: uuid::Uuid,
    e: &Entry,
    key: &str,
    sum: &mut ImportSummary,
) -> Result<(), OrderError> {
    sum.entries += 1;
    if e.status == "PDNG" {
        sum.pending += 1;
        return Ok(());
    }
    let now = s.clock.now();
    let key = key.to_owned();
    let returns: Vec<&TxDetails> = e.transactions.iter().filter(|t| t.return_reason.is_some()).collect();
    if !returns.is_empty() {
        let Some(entry_id) = claim(tx, e, &key, statement, Filed("booked", None, Some("returns")), now).await? else {
            sum.duplicates += 1;
            return Ok(());
        };
        for (seq, t) in returns.into_iter().enumerate() {
            let reason = t.return_reason.as_deref().unwrap_or("");
            let seq = i64::try_from(seq).unwrap_or(i64::MAX);
            match super::direct_debit::returned(s, tx, e, entry_id, seq, t, reason).await? {
                super::direct_debit::ReturnOutcome::Reversed => sum.returns += 1,
                super::direct_debit::ReturnOutcome::Held => sum.unmatched += 1,
                super::direct_debit::ReturnOutcome::Known => sum.ignored += 1,
            }
        }
        return Ok(());
    }
    if !e.credit {
        // A debit is no buyer payment; one naming a payout's end-to-end id is that payout leaving.
        let payouts: Vec<(uuid::Uuid, i64)> = e
            .transactions
            .iter()
            .filter_map(|t| {
                let id = uuid::Uuid::try_parse(t.end_to_end_id.as_deref()?).ok()?;
                Some((id, t.amount.unwrap_or(e.amount)))
            })
            .collect();
        let note = if payouts.is_empty() { "a debit, not a buyer payment" } else { "a payout to a PSP" };
        if claim(tx, e, &key, statement, Filed("ignored", None, Some(note)), now).await?.is_none() {
            sum.duplicates += 1;
            return Ok(());
        }
        let mut paid = 0;
        if e.status == "BOOK" {
            for (id, amount) in payouts {
                paid += u64::from(super::payouts::paid_in(s, tx, id, Some(amount)).await?);
            }
        }
        if paid > 0 {
            sum.payouts_paid += paid;
        } else {
            sum.ignored += 1;
        }
        return Ok(());
    }
    let info = e.status != "BOOK";
    match split(e) {
        Split::NeedsDetails if info => sum.ignored += 1,
        Split::NeedsDetails => {
            if claim(tx, e, &key, statement, Filed("awaiting_details", None, None), now).await?.is_some() {
                sum.awaiting_details += 1;
                return Ok(());
            }
            // Its details came first: book them now.
            let existing = store::entry_by_key(tx, &key).await?;
            match existing {
                Some(x) if x.state == "details" && store::move_entry(tx, x.id, "details", "booked").await? => {
                    let txs: Vec<TxDetails> = serde_json::from_str(x.details.as_deref().unwrap_or("[]"))
                        .map_err(|e| StoreError::Corrupt(format!("bank_entries.details: {e}")))?;
                    book_parts(s, tx, x.id, &key, &parts_for(e, txs), sum).await?;
                }
                _ => sum.duplicates += 1,
            }
        }
        Split::Parts(parts) => {
            let (state, details) = if info {
                let txs: Vec<&TxDetails> = parts.iter().map(|p| &p.tx).collect();
                ("details", Some(crate::store::to_json(&txs)?))
            } else {
                ("booked", None)
            };
            if let Some(id) = claim(tx, e, &key, statement, Filed(state, details, None), now).await? {
                if info {
                    sum.details_held += 1;
                } else {
                    book_parts(s, tx, id, &key, &parts, sum).await?;
                }
                return Ok(());
            }
            // Known already: a batch waiting for these details (or details seen, now booked)?
            let existing = store::entry_by_key(tx, &key).await?;
            let waiting = match &existing {
                Some(x) if x.state == "awaiting_details" && x.amount == e.amount => Some((x.id, "awaiting_details")),
                Some(x) if x.state == "details" && !info => Some((x.id, "details")),
                _ => None,
            };
            match waiting {
                Some((id, from)) if store::move_entry(tx, id, from, "booked").await? => {
                    book_parts(s, tx, id, &key, &parts, sum).await?;
                }
                _ => sum.duplicates += 1,
            }
        }
    }
    Ok(())
}

/// A payment the fast path may book: a booked credit entry that is one payment naming one valid
/// RF reference in its structured remittance, in a currency netterms serves.
struct Simple<'a> {
    index: usize,
    key: String,
    part: Part,
    rf: String,
    entry: &'a Entry,
}

fn simple<'a>(s: &Services, index: usize, e: &'a Entry, key: &str) -> Option<Simple<'a>> {
    if e.status != "BOOK" || !e.credit || e.amount <= 0 || e.transactions.iter().any(|t| t.return_reason.is_some()) {
        return None;
    }
    let Split::Parts(mut parts) = split(e) else { return None };
    if parts.len() != 1 || !s.config.currencies.contains(&e.currency) {
        return None;
    }
    let part = parts.pop()?;
    let refs: Vec<String> = part
        .tx
        .structured_refs
        .iter()
        .map(|r| crate::domain::iban::normalize(r))
        .filter(|r| crate::domain::matching::is_rf(r))
        .collect();
    let [rf] = refs.as_slice() else { return None };
    Some(Simple { index, key: key.to_owned(), rf: rf.clone(), part, entry: e })
}

/// Books, set-wise, the entries of a chunk that are the common case — one RF reference naming one
/// unpaid invoice outside dunning — in a few statements for the whole chunk: the entries claimed
/// by key, their invoices locked and changed by compare-and-set, and the payments, allocations,
/// ledger entries, events and e-mails written as the per-entry path writes them. Returns which
/// entries it handled (booked, or found to be duplicates); the rest take the per-entry path in
/// the same transaction.
async fn fast_path(
    s: &Services,
    tx: &mut Tx,
    statement: uuid::Uuid,
    chunk: &[(Entry, String)],
    sum: &mut ImportSummary,
) -> Result<Vec<bool>, OrderError> {
    use std::collections::{HashMap, HashSet};
    let mut handled = vec![false; chunk.len()];
    let mut cands: Vec<Simple<'_>> =
        chunk.iter().enumerate().filter_map(|(i, (e, key))| simple(s, i, e, key)).collect();
    // The same key twice in one chunk: the per-entry path sorts it out.
    let mut seen = HashSet::new();
    cands.retain(|c| seen.insert(c.key.clone()));
    if cands.is_empty() {
        return Ok(handled);
    }
    let now = s.clock.now();
    let ids: Vec<uuid::Uuid> = cands.iter().map(|_| uuid::Uuid::now_v7()).collect();
    let rows: Vec<NewEntry<'_>> = cands
        .iter()
        .zip(&ids)
        .map(|(c, id)| NewEntry {
            id: *id,
            key: &c.key,
            statement_id: statement,
            account: c.entry.account.as_deref(),
            currency: &c.entry.currency,
            amount: c.entry.amount,
            credit: true,
            status: &c.entry.status,
            state: "booked",
            booking_date: c.entry.booking_date.map(|d| d.to_string()),
            details: None,
            note: None,
        })
        .collect();
    let claimed: HashSet<String> = store::claim_entries(tx, &rows, now).await?.into_iter().collect();
    let refs: Vec<String> = cands.iter().filter(|c| claimed.contains(&c.key)).map(|c| c.rf.clone()).collect();
    let invoices = crate::store::captures::lock_by_references(tx, &refs).await?;
    let mut by_ref: HashMap<&str, Vec<&crate::store::captures::CaptureWithContact>> = HashMap::new();
    for i in &invoices {
        by_ref.entry(i.capture.payment_reference.as_str()).or_default().push(i);
    }
    let mut times: HashMap<crate::domain::ids::PspId, crate::clock::PspTime> = HashMap::new();
    let mut taken: HashSet<crate::domain::ids::CaptureId> = HashSet::new();
    let mut booked: Vec<(store::PaymentRow, crate::domain::ids::CaptureId, i64)> = Vec::new();
    let mut updates: Vec<(&crate::store::captures::CaptureRow, i64, &str)> = Vec::new();
    let mut after: Vec<(
        usize,
        crate::store::captures::CaptureRow,
        &crate::store::captures::CaptureWithContact,
        i64,
        i64,
    )> = Vec::new();
    // Claimed entries the general path books — after this path's writes, so that a second payment
    // of an invoice in the same chunk sees the first.
    let mut later: Vec<(usize, uuid::Uuid, &Simple<'_>)> = Vec::new();
    for (c, entry_id) in cands.iter().zip(&ids) {
        if !claimed.contains(&c.key) {
            // Known: a duplicate, or a batch waiting for these details — the per-entry path knows.
            continue;
        }
        let one = match by_ref.get(c.rf.as_str()).map(Vec::as_slice) {
            Some([one]) => *one,
            // No invoice, or more than one: the per-entry path (its entry is recorded already).
            _ => {
                later.push((c.index, *entry_id, c));
                continue;
            }
        };
        let inv = &one.capture;
        let plain = inv.is_unpaid()
            && inv.currency == c.part.currency
            && inv.interest_through.is_none()
            && inv.dunning_charges() == 0
            && taken.insert(inv.id);
        if !plain {
            later.push((c.index, *entry_id, c));
            continue;
        }
        let principal = c.part.amount.min(inv.outstanding());
        let credit = c.part.amount - principal;
        let state = super::captures::capture_state(
            inv.gross,
            inv.refunded + inv.charged_back,
            inv.paid_direct,
            inv.paid_bank + principal,
            &inv.state,
        );
        let t = &c.part.tx;
        let mut explanation = format!("the structured remittance names {}", c.rf);
        if credit > 0 {
            explanation.push_str(&format!("; {credit} more than owed became the buyer's credit"));
        }
        let at = match times.get(&inv.psp_id) {
            Some(a) => *a,
            None => {
                let a = s.now_for(tx, inv.psp_id).await?;
                times.insert(inv.psp_id, a);
                a
            }
        };
        booked.push((
            store::PaymentRow {
                id: uuid::Uuid::now_v7(),
                payment_key: format!("{}#0", c.key),
                entry_id: *entry_id,
                psp_id: Some(inv.psp_id),
                buyer_id: Some(inv.buyer_id),
                currency: c.part.currency.clone(),
                amount: c.part.amount,
                debtor_name: t.debtor_name.clone().or(t.ultimate_debtor.clone()),
                debtor_iban: t.debtor_account.clone(),
                creditor_iban: t.creditor_account.clone().or(c.part.account.clone()),
                reference: Some(t.structured_refs.join(" ")),
                remittance: (!t.unstructured.is_empty()).then(|| t.unstructured.join(" ")),
                end_to_end_id: t.end_to_end_id.clone(),
                mandate_id: t.mandate_id.clone(),
                booking_date: c.part.booking_date.clone(),
                state: "matched".into(),
                rule: Some(crate::domain::matching::Rule::StructuredReference.as_str().into()),
                explanation: Some(explanation),
                credit,
                created_at: at.now,
                updated_at: at.now,
            },
            inv.id,
            principal,
        ));
        updates.push((inv, principal, state));
        let mut next = inv.clone();
        next.paid_bank += principal;
        next.state = state.into();
        after.push((c.index, next, one, principal, credit));
    }
    let changed = crate::store::captures::apply_payments(tx, &updates, now).await?;
    if changed != updates.len() as u64 {
        return Err(OrderError::Conflict("an invoice changed meanwhile; retry".into()));
    }
    store::insert_booked(tx, &booked);
    let paid: Vec<(crate::domain::ids::CaptureId, uuid::Uuid)> = booked.iter().map(|(p, c, _)| (*c, p.id)).collect();
    crate::store::portal::end_claims_by_payment(tx, &paid, now);
    let mut settled_orders = Vec::new();
    let mut entries = Vec::with_capacity(booked.len());
    let mut evs = Vec::with_capacity(booked.len() * 2);
    let mut facts = Vec::with_capacity(booked.len());
    for ((p, _, _), (index, inv, one, principal, credit)) in booked.iter().zip(&after) {
        let at = times[&inv.psp_id];
        let entry = crate::domain::ledger::bank_payment(
            inv.buyer_id,
            crate::domain::ledger::Applied { charges: 0, principal: *principal, credit: *credit },
        )
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        entries.push((entry, p.currency.clone(), p.id, at.now));
        use crate::domain::events::{CaptureEventData, CaptureEventKind, Event, PaymentEvent, PaymentEventKind};
        if inv.state == "paid" {
            evs.push((inv.psp_id, Event::Capture(CaptureEventKind::Paid, CaptureEventData { capture_id: inv.id }), at));
            settled_orders.push((inv.order_id, inv.psp_id));
        }
        let ev = PaymentEvent {
            payment_id: p.id,
            capture_id: inv.id,
            order_id: inv.order_id,
            currency: inv.currency.clone(),
            amount: *principal,
            charges: 0,
            principal: *principal,
            matched_by: crate::domain::matching::Rule::StructuredReference.as_str().into(),
            outstanding: inv.outstanding(),
            return_reason: None,
        };
        evs.push((inv.psp_id, Event::Payment(PaymentEventKind::Received, ev), at));
        let f = super::messages::InvoiceFacts::of(s, &super::messages::buyer_of(one.contact.clone())?, inv)?;
        let b = super::payment_messages::Booked { amount: *principal, charges: 0, still_owed: inv.outstanding() };
        facts.push((f, p.id, b, at));
        sum.entries += 1;
        sum.payments += 1;
        sum.matched += 1;
        handled[*index] = true;
    }
    crate::store::ledger::post_many(tx, &entries);
    crate::store::events::append_many(tx, &evs);
    let mails: Vec<_> = facts
        .iter()
        .map(|(f, id, b, at)| {
            let (o, c) = super::payment_messages::payment_received_message(f, *id, *b);
            (o, c, *at)
        })
        .collect();
    let refs: Vec<_> = mails.iter().map(|(o, c, at)| (o, c, *at)).collect();
    super::messages::enqueue_many(s, tx, &refs);
    // Orders whose last invoice this paid are complete (locked first, as one settlement does).
    let mut order_ids: Vec<crate::domain::ids::OrderId> = settled_orders.iter().map(|(o, _)| *o).collect();
    order_ids.sort_by_key(|o| o.0);
    order_ids.dedup();
    crate::store::orders::lock_orders(tx, &order_ids).await?;
    for (order_id, merchant_id) in crate::store::orders::complete_many_if_settled(tx, &order_ids, now).await? {
        if let Some((_, psp)) = settled_orders.iter().find(|(o, _)| *o == order_id) {
            let at = times[psp];
            super::orders::order_event(
                tx,
                *psp,
                crate::domain::events::OrderEventKind::Complete,
                order_id,
                merchant_id,
                crate::domain::order::OrderState::Complete,
                at,
            )
            .await?;
        }
    }
    for (index, entry_id, c) in later {
        sum.entries += 1;
        handled[index] = true;
        book_parts(s, tx, entry_id, &c.key, std::slice::from_ref(&c.part), sum).await?;
    }
    Ok(handled)
}
