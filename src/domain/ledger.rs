//! The double-entry ledger's rules: accounts, balanced entries, and the postings each money
//! movement makes. Debits are positive, credits negative; every entry sums to zero in its one
//! currency. Entries are never changed: a correction is a reversal.

use serde::Serialize;

use super::ids::{BuyerId, PspId};

/// An account of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Account {
    /// What a buyer owes (asset).
    BuyerReceivable(BuyerId),
    /// What is owed back to a buyer who paid more than it owes after a refund (liability).
    BuyerCredit(BuyerId),
    /// What netterms owes a PSP (liability).
    PspPayable(PspId),
    /// netterms' fees (income).
    FeeRevenue,
    /// Money in netterms' bank account (asset).
    BankCash,
    /// Dunning fees and default interest a buyer owes netterms (asset).
    DunningReceivable(BuyerId),
    /// Dunning fees and default interest charged (income).
    DunningIncome,
    /// Money received that no invoice could be matched to yet (liability: it is someone's).
    UnappliedCash,
    /// Payouts made and not yet seen leaving the bank account (liability).
    PayoutsPending,
    /// VAT on netterms' fees, invoiced to PSPs and owed to the tax office (liability).
    VatPayable,
}

impl Account {
    /// The stored name, e.g. `buyer_receivable:<uuid>`.
    pub fn key(&self) -> String {
        match self {
            Account::BuyerReceivable(b) => format!("buyer_receivable:{b}"),
            Account::BuyerCredit(b) => format!("buyer_credit:{b}"),
            Account::PspPayable(p) => format!("psp_payable:{p}"),
            Account::FeeRevenue => "fee_revenue".into(),
            Account::BankCash => "bank_cash".into(),
            Account::DunningReceivable(b) => format!("dunning_receivable:{b}"),
            Account::DunningIncome => "dunning_income".into(),
            Account::UnappliedCash => "unapplied_cash".into(),
            Account::PayoutsPending => "payouts_pending".into(),
            Account::VatPayable => "vat_payable".into(),
        }
    }
}

/// A balanced set of lines in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub lines: Vec<(Account, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("entry does not balance (sum {0})")]
    Unbalanced(i128),
    #[error("amount out of range")]
    Overflow,
}

impl Entry {
    /// Builds an entry, dropping zero lines and merging repeated accounts; refuses one that does
    /// not sum to zero.
    pub fn new(kind: &'static str, lines: Vec<(Account, i64)>) -> Result<Entry, LedgerError> {
        let mut merged: Vec<(Account, i64)> = Vec::new();
        for (a, x) in lines {
            match merged.iter_mut().find(|(b, _)| *b == a) {
                Some((_, y)) => *y = y.checked_add(x).ok_or(LedgerError::Overflow)?,
                None => merged.push((a, x)),
            }
        }
        merged.retain(|(_, x)| *x != 0);
        let sum: i128 = merged.iter().map(|(_, x)| i128::from(*x)).sum();
        if sum != 0 {
            return Err(LedgerError::Unbalanced(sum));
        }
        Ok(Entry { kind, lines: merged })
    }

    /// The entry that undoes this one.
    pub fn reversal(&self) -> Entry {
        Entry { kind: "reversal", lines: self.lines.iter().map(|(a, x)| (a.clone(), -x)).collect() }
    }
}

/// A capture of `gross` with netterms' `fee`: the buyer owes the gross, the PSP is owed the rest.
pub fn capture(buyer: BuyerId, psp: PspId, gross: i64, fee: i64) -> Result<Entry, LedgerError> {
    let to_psp = gross.checked_sub(fee).ok_or(LedgerError::Overflow)?;
    Entry::new(
        "capture",
        vec![
            (Account::BuyerReceivable(buyer), gross),
            (Account::PspPayable(psp), -to_psp),
            (Account::FeeRevenue, -fee),
        ],
    )
}

/// A refund of `amount`, of which `against_receivable` lowers what the buyer still owes and the
/// rest is owed back to the buyer; the PSP bears all of it (recovered from its payout).
pub fn refund(buyer: BuyerId, psp: PspId, amount: i64, against_receivable: i64) -> Result<Entry, LedgerError> {
    borne_by_psp("refund", buyer, psp, amount, against_receivable)
}

/// A chargeback of a dispute: as a refund, the buyer owes `amount` no longer (what it had paid of
/// it is owed back to it) and the PSP bears it (recovered from its next payout).
pub fn chargeback(buyer: BuyerId, psp: PspId, amount: i64, against_receivable: i64) -> Result<Entry, LedgerError> {
    borne_by_psp("chargeback", buyer, psp, amount, against_receivable)
}

fn borne_by_psp(
    kind: &'static str,
    buyer: BuyerId,
    psp: PspId,
    amount: i64,
    against_receivable: i64,
) -> Result<Entry, LedgerError> {
    let owed_back = amount.checked_sub(against_receivable).ok_or(LedgerError::Overflow)?;
    Entry::new(
        kind,
        vec![
            (Account::PspPayable(psp), amount),
            (Account::BuyerReceivable(buyer), -against_receivable),
            (Account::BuyerCredit(buyer), -owed_back),
        ],
    )
}

/// A payout of `amount` to the PSP: owed no longer, on its way.
pub fn payout(psp: PspId, amount: i64) -> Result<Entry, LedgerError> {
    Entry::new("payout", vec![(Account::PspPayable(psp), amount), (Account::PayoutsPending, -amount)])
}

/// A fee invoice split `vat` out of the fees (quoted including VAT): netterms owes it to the
/// tax office, it is no income.
pub fn fee_vat(vat: i64) -> Result<Entry, LedgerError> {
    Entry::new("fee_vat", vec![(Account::FeeRevenue, vat), (Account::VatPayable, -vat)])
}

/// The bank refused the payout's transfer: the PSP is owed the amount again (the next payout pays
/// it: this entry is a movement of the PSP's payable like any other).
pub fn payout_rejected(psp: PspId, amount: i64) -> Result<Entry, LedgerError> {
    Entry::new("payout_rejected", vec![(Account::PspPayable(psp), -amount), (Account::PayoutsPending, amount)])
}

/// The payout left the bank account.
pub fn payout_paid(amount: i64) -> Result<Entry, LedgerError> {
    Entry::new("payout_paid", vec![(Account::PayoutsPending, amount), (Account::BankCash, -amount)])
}

/// The buyer paid the merchant directly: it owes less, and the PSP is paid that much less.
pub fn direct_payment(buyer: BuyerId, psp: PspId, amount: i64) -> Result<Entry, LedgerError> {
    Entry::new("direct_payment", vec![(Account::PspPayable(psp), amount), (Account::BuyerReceivable(buyer), -amount)])
}

/// A dunning step charged the buyer a flat fee and/or default interest (netterms' own claims).
pub fn dunning_charge(buyer: BuyerId, kind: &'static str, amount: i64) -> Result<Entry, LedgerError> {
    Entry::new(kind, vec![(Account::DunningReceivable(buyer), amount), (Account::DunningIncome, -amount)])
}

/// Charged fees and interest no longer claimed (the invoice was settled by a refund or a direct
/// payment to the merchant).
pub fn dunning_waiver(buyer: BuyerId, amount: i64) -> Result<Entry, LedgerError> {
    Entry::new("dunning_waiver", vec![(Account::DunningIncome, amount), (Account::DunningReceivable(buyer), -amount)])
}

/// How a payment of a buyer is applied: to dunning fees and interest, to invoices' principal,
/// and the rest to the buyer's credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    pub charges: i64,
    pub principal: i64,
    pub credit: i64,
}

impl Applied {
    pub fn total(&self) -> Result<i64, LedgerError> {
        self.charges.checked_add(self.principal).and_then(|x| x.checked_add(self.credit)).ok_or(LedgerError::Overflow)
    }

    fn lines(&self, buyer: BuyerId) -> Vec<(Account, i64)> {
        vec![
            (Account::DunningReceivable(buyer), -self.charges),
            (Account::BuyerReceivable(buyer), -self.principal),
            (Account::BuyerCredit(buyer), -self.credit),
        ]
    }
}

/// A buyer's payment arrived in netterms' account and was matched.
pub fn bank_payment(buyer: BuyerId, applied: Applied) -> Result<Entry, LedgerError> {
    let mut lines = vec![(Account::BankCash, applied.total()?)];
    lines.extend(applied.lines(buyer));
    Entry::new("bank_payment", lines)
}

/// Money arrived that nothing could be matched to: held as unapplied cash.
pub fn unapplied_receipt(amount: i64) -> Result<Entry, LedgerError> {
    Entry::new("unapplied_receipt", vec![(Account::BankCash, amount), (Account::UnappliedCash, -amount)])
}

/// An operator assigned unapplied cash to a buyer's invoices.
pub fn unapplied_assignment(buyer: BuyerId, applied: Applied) -> Result<Entry, LedgerError> {
    let mut lines = vec![(Account::UnappliedCash, applied.total()?)];
    lines.extend(applied.lines(buyer));
    Entry::new("unapplied_assignment", lines)
}

/// Unapplied cash sent back to whoever paid it.
pub fn unapplied_refund(amount: i64) -> Result<Entry, LedgerError> {
    Entry::new("unapplied_refund", vec![(Account::UnappliedCash, amount), (Account::BankCash, -amount)])
}

/// A buyer's credit paid out to it.
pub fn credit_refund(buyer: BuyerId, amount: i64) -> Result<Entry, LedgerError> {
    Entry::new("credit_refund", vec![(Account::BuyerCredit(buyer), amount), (Account::BankCash, -amount)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn unbalanced_entries_are_refused() {
        assert!(Entry::new("x", vec![(Account::BankCash, 5), (Account::FeeRevenue, -4)]).is_err());
        let e = Entry::new("x", vec![(Account::BankCash, 5), (Account::BankCash, -5)]).unwrap();
        assert!(e.lines.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Capture(i64, i64),
        Refund(i64, i64),
        Direct(i64),
        Paid(i64, i64, i64),
        Unapplied(i64, bool),
        Reverse(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1i64..1_000_000, 0i64..10_000).prop_map(|(g, f)| Op::Capture(g, f.min(g))),
            (1i64..1_000_000, 0i64..1_000_000).prop_map(|(a, r)| Op::Refund(a, r.min(a))),
            (1i64..1_000_000).prop_map(Op::Direct),
            (0i64..10_000, 0i64..1_000_000, 0i64..10_000).prop_map(|(c, p, r)| Op::Paid(c, p, r)),
            (1i64..1_000_000, any::<bool>()).prop_map(|(a, assign)| Op::Unapplied(a, assign)),
            (0usize..50).prop_map(Op::Reverse),
        ]
    }

    proptest! {
        /// Whatever sequence of movements and reversals: every entry balances, so the sum over
        /// all accounts is zero, and each reversal restores the balances before its entry.
        #[test]
        fn ledger_stays_balanced(ops in proptest::collection::vec(op(), 1..60)) {
            let b = BuyerId::new();
            let p = PspId::new();
            let mut entries: Vec<Entry> = Vec::new();
            for o in ops {
                let e = match o {
                    Op::Capture(g, f) => capture(b, p, g, f).unwrap(),
                    Op::Refund(a, r) => refund(b, p, a, r).unwrap(),
                    Op::Direct(a) => direct_payment(b, p, a).unwrap(),
                    Op::Paid(charges, principal, credit) => bank_payment(b, Applied { charges, principal, credit }).unwrap(),
                    Op::Unapplied(a, assign) => {
                        entries.push(unapplied_receipt(a).unwrap());
                        if assign {
                            unapplied_assignment(b, Applied { principal: a, ..Applied::default() }).unwrap()
                        } else {
                            unapplied_refund(a).unwrap()
                        }
                    }
                    Op::Reverse(i) if !entries.is_empty() => entries[i % entries.len()].reversal(),
                    Op::Reverse(_) => continue,
                };
                entries.push(e);
            }
            let mut bal: HashMap<Account, i128> = HashMap::new();
            for e in &entries {
                let s: i128 = e.lines.iter().map(|(_, x)| i128::from(*x)).sum();
                prop_assert_eq!(s, 0);
                for (a, x) in &e.lines {
                    *bal.entry(a.clone()).or_default() += i128::from(*x);
                }
            }
            prop_assert_eq!(bal.values().sum::<i128>(), 0);
            // Reversing everything leaves every account at zero.
            let mut all = bal.clone();
            for e in &entries {
                for (a, x) in &e.reversal().lines {
                    *all.entry(a.clone()).or_default() += i128::from(*x);
                }
            }
            prop_assert!(all.values().all(|x| *x == 0));
        }

        /// Fees never make the PSP's share exceed the gross, and the capture still balances.
        #[test]
        fn capture_splits_gross_exactly(g in 1i64..10_000_000_000, f in 0i64..10_000_000_000) {
            let f = f.min(g);
            let e = capture(BuyerId::new(), PspId::new(), g, f).unwrap();
            let recv: i64 = e.lines.iter().filter(|(a, _)| matches!(a, Account::BuyerReceivable(_))).map(|(_, x)| *x).sum();
            prop_assert_eq!(recv, g);
        }
    }
}
