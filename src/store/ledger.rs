//! The double-entry ledger: appending balanced entries, and reconciling the journal with the
//! business tables (`netterms ledger verify`).

use chrono::{DateTime, Utc};

use super::{Arg, AsExec, Backend, StoreResult, Tx};
use crate::domain::ids::EntryId;
use crate::domain::ledger::Entry;
use crate::with_conn;

/// Appends a balanced entry (deferred, like every write whose result the transaction does not need).
pub async fn post(
    tx: &mut Tx,
    entry: &Entry,
    currency: &str,
    ref_id: uuid::Uuid,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    post_deferred(tx, entry, currency, ref_id, now);
    Ok(())
}

/// The PSP whose payable an entry moves, if any.
fn psp_of(entry: &Entry) -> Option<crate::domain::ids::PspId> {
    entry.lines.iter().find_map(|(a, _)| match a {
        crate::domain::ledger::Account::PspPayable(p) => Some(*p),
        _ => None,
    })
}

/// Defers the entry's two inserts. An entry that moves what a PSP is owed takes the PSP's payout
/// lock (shared) and is dated no earlier than the cut-off of the PSP's latest payout run: a
/// movement that reaches the ledger after a run is paid by the next payout, and says so by its
/// date (every movement dated before a cut-off is in that cut-off's payout).
fn post_deferred(tx: &mut Tx, entry: &Entry, currency: &str, ref_id: uuid::Uuid, now: DateTime<Utc>) {
    let id = EntryId::new();
    match psp_of(entry) {
        Some(psp) => {
            tx.lock_payouts_shared(psp);
            let later = if tx.backend() == Backend::Postgres { "GREATEST" } else { "MAX" };
            tx.defer(
                &format!(
                    "INSERT INTO ledger_entries (id, kind, ref_id, currency, created_at) VALUES ($1, $2, $3, $4, \
                     {later}($5, COALESCE((SELECT MAX(r.cutoff) FROM payout_runs r WHERE r.psp_id = $6), $5)))"
                ),
                vec![id.0.into(), entry.kind.into(), ref_id.into(), currency.into(), now.into(), psp.0.into()],
            );
        }
        None => tx.defer(
            "INSERT INTO ledger_entries (id, kind, ref_id, currency, created_at) VALUES ($1, $2, $3, $4, $5)",
            vec![id.0.into(), entry.kind.into(), ref_id.into(), currency.into(), now.into()],
        ),
    }
    // All lines in one statement.
    if !entry.lines.is_empty() {
        let values: Vec<String> =
            (0..entry.lines.len()).map(|i| format!("($1, ${}, ${})", 2 * i + 2, 2 * i + 3)).collect();
        let mut args = vec![Arg::from(id.0)];
        for (account, amount) in &entry.lines {
            args.push(account.key().into());
            args.push((*amount).into());
        }
        tx.defer(&format!("INSERT INTO ledger_lines (entry_id, account, amount) VALUES {}", values.join(", ")), args);
    }
}

/// Appends many balanced entries in two statements (deferred): each with its currency, the
/// object it belongs to and its time. (Entries that move what a PSP is owed go one by one, as
/// [`post`] writes them.)
pub fn post_many(tx: &mut Tx, entries: &[(Entry, String, uuid::Uuid, DateTime<Utc>)]) {
    let mut heads = Vec::with_capacity(entries.len());
    let mut lines = Vec::new();
    for (entry, currency, ref_id, now) in entries {
        if psp_of(entry).is_some() {
            post_deferred(tx, entry, currency, *ref_id, *now);
            continue;
        }
        let id = EntryId::new();
        heads.push(vec![id.0.into(), entry.kind.into(), (*ref_id).into(), currency.as_str().into(), (*now).into()]);
        for (account, amount) in &entry.lines {
            lines.push(vec![Arg::from(id.0), account.key().into(), (*amount).into()]);
        }
    }
    tx.defer_rows("INSERT INTO ledger_entries (id, kind, ref_id, currency, created_at) VALUES", heads, "");
    tx.defer_rows("INSERT INTO ledger_lines (entry_id, account, amount) VALUES", lines, "");
}

/// SQL that renders a UUID column as the hyphenated lower-case text ledger account names use.
fn uuid_text(col: &str, b: Backend) -> String {
    match b {
        Backend::Postgres => format!("CAST({col} AS TEXT)"),
        Backend::Sqlite => format!(
            "lower(substr(hex({col}), 1, 8) || '-' || substr(hex({col}), 9, 4) || '-' || substr(hex({col}), 13, 4) || '-' \
             || substr(hex({col}), 17, 4) || '-' || substr(hex({col}), 21))"
        ),
    }
}

/// Rows of a reconciliation query: (what, expected from the business tables, found in the ledger).
pub type Differences = Vec<(String, i64, i64)>;

/// Recomputes the ledger and compares it with the business tables; every difference is returned.
pub async fn verify(conn: &mut impl AsExec) -> StoreResult<Differences> {
    let mut diffs = Differences::new();
    let unbalanced: Vec<(EntryId, i64)> = with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT e.id, CAST(SUM(l.amount) AS BIGINT) FROM ledger_entries e JOIN ledger_lines l ON l.entry_id = e.id \
             GROUP BY e.id HAVING SUM(l.amount) <> 0",
        )
        .fetch_all(&mut *c).await?
    });
    for (id, sum) in unbalanced {
        diffs.push((format!("entry {id} does not balance"), 0, sum));
    }
    // What each buyer owes: invoices less refunds and direct payments against them.
    diffs.extend(
        compare(
            conn,
            "buyer_receivable",
            "buyer_id",
            "SUM(CASE WHEN gross - refunded - charged_back - paid_direct - paid_bank > 0 \
             THEN gross - refunded - charged_back - paid_direct - paid_bank ELSE 0 END)",
        )
        .await?,
    );
    // What each PSP is owed: captured gross less fees, refunds and direct payments (a credit),
    // less what was paid out to it (a payout the bank rejected is owed again).
    let psp_sql = |b: Backend| {
        format!(
            "SELECT k, CAST(SUM(expected) AS BIGINT), CAST(SUM(found) AS BIGINT) FROM ( \
               SELECT 'psp_payable:' || {c} AS k, currency, -SUM(gross - fee - refunded - charged_back - paid_direct) AS expected, 0 AS found \
                 FROM captures GROUP BY psp_id, currency \
               UNION ALL SELECT 'psp_payable:' || {p}, currency, SUM(amount), 0 FROM payouts WHERE state <> 'rejected' GROUP BY psp_id, currency \
               UNION ALL SELECT l.account, e.currency, 0, SUM(l.amount) FROM ledger_lines l JOIN ledger_entries e ON e.id = l.entry_id \
                 WHERE l.account LIKE 'psp_payable:%' GROUP BY l.account, e.currency \
             ) x GROUP BY k, currency HAVING SUM(expected) <> SUM(found)",
            c = uuid_text("psp_id", b),
            p = uuid_text("psp_id", b),
        )
    };
    let rows: Differences = with_conn!(conn, c, b => sqlx::query_as(&psp_sql(b)).fetch_all(&mut *c).await?);
    diffs.extend(rows);
    // Payouts made and neither seen leaving the bank nor rejected by it; and every payout is the
    // sum of its lines.
    diffs.extend(
        compare_sql(
            conn,
            "SELECT 'payouts_pending:' || currency, CAST(SUM(expected) AS BIGINT), CAST(SUM(found) AS BIGINT) FROM ( \
               SELECT currency, -amount AS expected, 0 AS found FROM payouts WHERE state IN ('pending', 'sent') \
               UNION ALL SELECT e.currency, 0, l.amount FROM ledger_lines l JOIN ledger_entries e ON e.id = l.entry_id \
                 WHERE l.account = 'payouts_pending' \
             ) x GROUP BY currency HAVING SUM(expected) <> SUM(found)",
        )
        .await?,
    );
    let lines_sql = |b: Backend| {
        format!(
            "SELECT 'payout:' || {p}, CAST(p.amount AS BIGINT), CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) \
             FROM payouts p LEFT JOIN payout_lines l ON l.payout_id = p.id GROUP BY p.id, p.amount \
             HAVING p.amount <> COALESCE(SUM(l.amount), 0)",
            p = uuid_text("p.id", b),
        )
    };
    let rows: Differences = with_conn!(conn, c, b => sqlx::query_as(&lines_sql(b)).fetch_all(&mut *c).await?);
    diffs.extend(rows);
    // What chargebacks took off each invoice is what its disputes closed as `chargeback` took.
    let chargebacks_sql = |b: Backend| {
        format!(
            "SELECT 'chargebacks:' || {k}, CAST(SUM(expected) AS BIGINT), CAST(SUM(found) AS BIGINT) FROM ( \
               SELECT id AS k, charged_back AS expected, 0 AS found FROM captures WHERE charged_back <> 0 \
               UNION ALL SELECT capture_id, 0, charged_back FROM disputes WHERE state = 'chargeback' \
             ) x GROUP BY k HAVING SUM(expected) <> SUM(found)",
            k = uuid_text("k", b),
        )
    };
    let rows: Differences = with_conn!(conn, c, b => sqlx::query_as(&chargebacks_sql(b)).fetch_all(&mut *c).await?);
    diffs.extend(rows);
    // Fees are income less the VAT fee invoices split out of them, which is owed to the tax office.
    let fees: (i64, i64, i64, i64) = with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT CAST(COALESCE((SELECT -SUM(fee) FROM captures), 0) + COALESCE((SELECT SUM(vat) FROM fee_invoices), 0) AS BIGINT), \
                    CAST(COALESCE((SELECT SUM(amount) FROM ledger_lines WHERE account = 'fee_revenue'), 0) AS BIGINT), \
                    CAST(COALESCE((SELECT -SUM(vat) FROM fee_invoices), 0) AS BIGINT), \
                    CAST(COALESCE((SELECT SUM(amount) FROM ledger_lines WHERE account = 'vat_payable'), 0) AS BIGINT)",
        )
        .fetch_one(&mut *c).await?
    });
    if fees.0 != fees.1 {
        diffs.push(("fee_revenue".into(), fees.0, fees.1));
    }
    if fees.2 != fees.3 {
        diffs.push(("vat_payable".into(), fees.2, fees.3));
    }
    // Dunning fees and default interest each buyer owes netterms, and the income they made.
    diffs.extend(
        compare(
            conn,
            "dunning_receivable",
            "buyer_id",
            "SUM(dunning_fees + dunning_interest - dunning_waived - dunning_paid)",
        )
        .await?,
    );
    let dunning: (i64, i64) = with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT CAST(COALESCE((SELECT -SUM(dunning_fees + dunning_interest - dunning_waived) FROM captures), 0) AS BIGINT), \
                    CAST(COALESCE((SELECT SUM(amount) FROM ledger_lines WHERE account = 'dunning_income'), 0) AS BIGINT)",
        )
        .fetch_one(&mut *c).await?
    });
    if dunning.0 != dunning.1 {
        diffs.push(("dunning_income".into(), dunning.0, dunning.1));
    }
    // Money in the bank: payments received (matched, unmatched, or sent back) less transfers out.
    diffs.extend(
        compare_sql(
            conn,
            "SELECT 'bank_cash:' || currency, CAST(SUM(expected) AS BIGINT), CAST(SUM(found) AS BIGINT) FROM ( \
               SELECT currency, amount AS expected, 0 AS found FROM bank_payments WHERE state IN ('matched', 'unmatched', 'refunded') \
               UNION ALL SELECT currency, -amount, 0 FROM credit_transfers \
               UNION ALL SELECT currency, -amount, 0 FROM payouts WHERE state = 'paid' \
               UNION ALL SELECT e.currency, 0, l.amount FROM ledger_lines l JOIN ledger_entries e ON e.id = l.entry_id \
                 WHERE l.account = 'bank_cash' \
             ) x GROUP BY currency HAVING SUM(expected) <> SUM(found)",
        )
        .await?,
    );
    // Money received that is nobody's yet: the unmatched queue.
    diffs.extend(
        compare_sql(
            conn,
            "SELECT 'unapplied_cash:' || currency, CAST(SUM(expected) AS BIGINT), CAST(SUM(found) AS BIGINT) FROM ( \
               SELECT currency, -amount AS expected, 0 AS found FROM bank_payments WHERE state = 'unmatched' \
               UNION ALL SELECT e.currency, 0, l.amount FROM ledger_lines l JOIN ledger_entries e ON e.id = l.entry_id \
                 WHERE l.account = 'unapplied_cash' \
             ) x GROUP BY currency HAVING SUM(expected) <> SUM(found)",
        )
        .await?,
    );
    // What is owed back to each buyer: refunds of what it had paid, and over-payments.
    let buyer = |col: &str, b: Backend| uuid_text(col, b);
    let sql = |b: Backend| {
        format!(
            "SELECT k, CAST(SUM(expected) AS BIGINT), CAST(SUM(found) AS BIGINT) FROM ( \
               SELECT 'buyer_credit:' || {c} AS k, r.currency, -r.owed_to_buyer AS expected, 0 AS found \
                 FROM refunds r JOIN captures c ON c.id = r.capture_id WHERE r.owed_to_buyer <> 0 \
               UNION ALL SELECT 'buyer_credit:' || {p}, p.currency, -p.credit, 0 FROM bank_payments p \
                 WHERE p.state = 'matched' AND p.credit <> 0 \
               UNION ALL SELECT 'buyer_credit:' || {t}, t.currency, t.amount, 0 FROM credit_transfers t \
                 WHERE t.kind = 'credit_refund' \
               UNION ALL SELECT 'buyer_credit:' || {d}, d.currency, -d.owed_to_buyer, 0 \
                 FROM disputes d JOIN captures dc ON dc.id = d.capture_id WHERE d.owed_to_buyer <> 0 \
               UNION ALL SELECT l.account, e.currency, 0, l.amount FROM ledger_lines l JOIN ledger_entries e ON e.id = l.entry_id \
                 WHERE l.account LIKE 'buyer_credit:%' \
             ) x GROUP BY k, currency HAVING SUM(expected) <> SUM(found)",
            c = buyer("c.buyer_id", b),
            p = buyer("p.buyer_id", b),
            t = buyer("t.buyer_id", b),
            d = buyer("dc.buyer_id", b),
        )
    };
    let rows: Differences = with_conn!(conn, c, b => sqlx::query_as(&sql(b)).fetch_all(&mut *c).await?);
    diffs.extend(rows);
    Ok(diffs)
}

/// The rows of a reconciliation query that already names (what, expected, found).
async fn compare_sql(conn: &mut impl AsExec, sql: &str) -> StoreResult<Differences> {
    Ok(with_conn!(conn, c => sqlx::query_as(sql).fetch_all(&mut *c).await?))
}

/// Balances of the `prefix:<id>` accounts against `expected` (an aggregate over captures grouped
/// by `id_col` and currency), in both directions; the accounts that differ.
async fn compare(conn: &mut impl AsExec, prefix: &str, id_col: &str, expected: &str) -> StoreResult<Differences> {
    Ok(with_conn!(conn, c, b => {
        let key = uuid_text(id_col, b);
        sqlx::query_as(&format!(
            "SELECT k, CAST(SUM(expected) AS BIGINT), CAST(SUM(found) AS BIGINT) FROM ( \
               SELECT '{prefix}:' || {key} AS k, currency, {expected} AS expected, 0 AS found \
               FROM captures GROUP BY {id_col}, currency \
               UNION ALL \
               SELECT l.account, e.currency, 0, SUM(l.amount) FROM ledger_lines l JOIN ledger_entries e ON e.id = l.entry_id \
               WHERE l.account LIKE '{prefix}:%' GROUP BY l.account, e.currency \
             ) x GROUP BY k, currency HAVING SUM(expected) <> SUM(found)"
        ))
        .fetch_all(&mut *c).await?
    }))
}
