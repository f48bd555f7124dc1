//! What every `/admin/v1` operation and every console action needs (SPEC §14.1): one table each,
//! read by the admin API's middleware and by the console's handlers. Anything not listed is
//! refused.

use axum::http::Method;

use crate::domain::operators::Permission;

use Permission as P;

/// `(method, route template, permission, audit action)` of every admin API operation. Every
/// operation that changes something names the action its audit record says.
pub const ADMIN: &[(&str, &str, Permission, Option<&str>)] = &[
    ("GET", "/admin/v1/psps", P::Read, None),
    ("POST", "/admin/v1/psps", P::ManagePsps, Some("psp.created")),
    ("GET", "/admin/v1/psps/{psp_id}", P::Read, None),
    ("PATCH", "/admin/v1/psps/{psp_id}", P::ManagePsps, Some("psp.updated")),
    ("GET", "/admin/v1/psps/{psp_id}/credentials", P::Read, None),
    ("POST", "/admin/v1/psps/{psp_id}/credentials", P::ManageCredentials, Some("psp.credential_issued")),
    (
        "POST",
        "/admin/v1/psps/{psp_id}/credentials/{credential_id}/revoke",
        P::ManageCredentials,
        Some("psp.credential_revoked"),
    ),
    ("POST", "/admin/v1/orders/{order_id}/approve", P::DecideReview, Some("order.approved")),
    ("POST", "/admin/v1/orders/{order_id}/decline", P::DecideReview, Some("order.declined")),
    ("GET", "/admin/v1/credit-policy", P::Read, None),
    ("PUT", "/admin/v1/credit-policy", P::ManageCreditPolicy, Some("credit_policy.changed")),
    ("PATCH", "/admin/v1/buyers/{buyer_id}", P::ManageCreditPolicy, Some("buyer.updated")),
    ("GET", "/admin/v1/dunning-policy", P::Read, None),
    ("PUT", "/admin/v1/dunning-policy", P::ManagePolicies, Some("dunning_policy.changed")),
    ("GET", "/admin/v1/base-rates", P::Read, None),
    ("PUT", "/admin/v1/base-rates/{valid_from}", P::ManagePolicies, Some("base_rate.set")),
    ("POST", "/admin/v1/captures/{capture_id}/dunning/pause", P::PauseDunning, Some("dunning.paused")),
    ("POST", "/admin/v1/captures/{capture_id}/dunning/resume", P::PauseDunning, Some("dunning.resumed")),
    ("GET", "/admin/v1/jobs", P::Read, None),
    ("POST", "/admin/v1/jobs/{job_id}/retry", P::RetryJobs, Some("job.retried")),
    ("GET", "/admin/v1/messages", P::Read, None),
    ("GET", "/admin/v1/messages/{message_id}/attachment", P::Read, None),
    ("GET", "/admin/v1/bank-statements", P::Read, None),
    ("POST", "/admin/v1/bank-statements", P::BankFiles, Some("bank_statement.imported")),
    ("POST", "/admin/v1/payment-status-reports", P::BankFiles, Some("status_report.imported")),
    ("GET", "/admin/v1/direct-debit-files", P::Read, None),
    ("POST", "/admin/v1/direct-debit-files", P::BankFiles, Some("direct_debit_file.created")),
    ("GET", "/admin/v1/direct-debit-files/{file_id}", P::BankFiles, None),
    ("GET", "/admin/v1/payments/{payment_id}", P::Read, None),
    ("GET", "/admin/v1/unmatched-payments", P::Read, None),
    ("POST", "/admin/v1/unmatched-payments/{payment_id}/assign", P::MatchPayments, Some("payment.assigned")),
    ("POST", "/admin/v1/unmatched-payments/{payment_id}/refund", P::RefundMoney, Some("payment.refunded")),
    ("GET", "/admin/v1/unmatched-returns", P::Read, None),
    (
        "POST",
        "/admin/v1/unmatched-returns/{unmatched_return_id}/apply",
        P::MatchPayments,
        Some("unmatched_return.applied"),
    ),
    (
        "POST",
        "/admin/v1/unmatched-returns/{unmatched_return_id}/dismiss",
        P::MatchPayments,
        Some("unmatched_return.dismissed"),
    ),
    ("GET", "/admin/v1/credit-transfers/{credit_transfer_id}", P::RefundMoney, None),
    ("GET", "/admin/v1/buyers/{buyer_id}/credit", P::Read, None),
    ("POST", "/admin/v1/buyers/{buyer_id}/credit-refunds", P::RefundMoney, Some("buyer.credit_refunded")),
    ("GET", "/admin/v1/payment-claims", P::Read, None),
    ("GET", "/admin/v1/support-requests", P::Read, None),
    ("GET", "/admin/v1/support-requests/{support_request_id}", P::Read, None),
    ("GET", "/admin/v1/support-requests/{support_request_id}/attachment", P::Read, None),
    (
        "POST",
        "/admin/v1/support-requests/{support_request_id}/answer",
        P::AnswerSupport,
        Some("support_request.answered"),
    ),
    ("GET", "/admin/v1/payouts/{payout_id}/pain.001", P::ManagePayouts, None),
    ("POST", "/admin/v1/payouts/{payout_id}/mark-paid", P::ManagePayouts, Some("payout.marked_paid")),
    ("GET", "/admin/v1/disputes", P::Read, None),
    ("POST", "/admin/v1/disputes", P::ManageDisputes, Some("dispute.opened")),
    ("GET", "/admin/v1/disputes/{dispute_id}", P::Read, None),
    ("POST", "/admin/v1/disputes/{dispute_id}/close", P::ManageDisputes, Some("dispute.closed")),
    ("GET", "/admin/v1/disputes/{dispute_id}/documents/{seq}", P::Read, None),
    ("GET", "/admin/v1/operators", P::Read, None),
    ("POST", "/admin/v1/operators", P::ManageOperators, Some("operator.created")),
    ("PATCH", "/admin/v1/operators/{operator_id}", P::ManageOperators, Some("operator.updated")),
    (
        "POST",
        "/admin/v1/operators/{operator_id}/second-factor-reset",
        P::ManageOperators,
        Some("operator.second_factor_reset"),
    ),
    ("GET", "/admin/v1/audit-events", P::Read, None),
    // The proposed operation's own permission is checked when the decision is made.
    ("GET", "/admin/v1/approvals", P::Read, None),
    ("POST", "/admin/v1/approvals/{approval_id}/approve", P::Read, None),
    ("POST", "/admin/v1/approvals/{approval_id}/reject", P::Read, None),
];

/// What an admin API request needs and the action it is audited as; `None` for anything not in
/// the table (refused).
pub fn admin(method: &Method, route: &str) -> Option<(Permission, Option<&'static str>)> {
    ADMIN.iter().find(|(m, r, _, _)| *m == method.as_str() && *r == route).map(|(_, _, p, a)| (*p, *a))
}

/// Whether an action needing `p` must say why (SPEC §14.2: it moves money, changes a policy or
/// changes access).
pub fn needs_reason(p: Permission) -> bool {
    matches!(
        p,
        P::RefundMoney
            | P::ManagePayouts
            | P::ManagePolicies
            | P::ManageCreditPolicy
            | P::ManageOperators
            | P::ManageCredentials
            | P::ManagePsps
    )
}

/// `(method, route template, permission)` of every console page and action behind sign-in.
pub const CONSOLE: &[(&str, &str, Permission)] = &[
    ("GET", "/console", P::Read),
    ("GET", "/console/account", P::Read),
    ("POST", "/console/account/tokens", P::Read),
    ("POST", "/console/account/tokens/{token_id}/revoke", P::Read),
    ("POST", "/console/account/sign-out-everywhere", P::Read),
    ("GET", "/console/enrol", P::Read),
    ("POST", "/console/enrol", P::Read),
    ("GET", "/console/operators", P::Read),
    ("POST", "/console/operators", P::ManageOperators),
    ("GET", "/console/operators/{operator_id}", P::Read),
    ("POST", "/console/operators/{operator_id}", P::ManageOperators),
    ("POST", "/console/operators/{operator_id}/second-factor-reset", P::ManageOperators),
    ("POST", "/console/operators/{operator_id}/password-link", P::ManageOperators),
    ("GET", "/console/audit", P::Read),
    // Deciding checks the proposed operation's own permission (as the admin API does).
    ("GET", "/console/queues/approvals", P::Read),
    ("POST", "/console/queues/approvals/{approval_id}/decide", P::Read),
];

/// What a console request needs.
pub fn console(method: &Method, route: &str) -> Option<Permission> {
    CONSOLE.iter().find(|(m, r, _)| *m == method.as_str() && *r == route).map(|(_, _, p)| *p)
}
