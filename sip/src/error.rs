//! The crate-level [`Error`]: what can go wrong when a transaction user drives the SIP core,
//! in domain words. Malformed input from the network is a [`ParseError`] wrapped here; protocol
//! outcomes that are not failures (a digest challenge, a registrar refusal) are values of their
//! own modules, not errors.

use crate::message::ParseError;

/// Errors of the SIP core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A message was malformed or lacked a mandatory header.
    #[error("malformed SIP message: {0}")]
    Malformed(#[from] ParseError),
    /// A client transaction with the same branch and method is already running.
    #[error("a transaction with branch {branch} and method {method} already exists")]
    DuplicateTransaction {
        /// The Via branch.
        branch: String,
        /// The request method.
        method: String,
    },
    /// The transaction named by the caller does not exist (any more).
    #[error("no such transaction (it may have terminated)")]
    UnknownTransaction,
    /// The transaction is in a state where the requested action is not allowed, e.g. a second
    /// final response on an INVITE server transaction.
    #[error("transaction cannot {action} in its current state")]
    TransactionState {
        /// What was attempted.
        action: &'static str,
    },
    /// A response handed to a server transaction does not belong to its request.
    #[error("response does not match the transaction's request: {0}")]
    MismatchedResponse(&'static str),
    /// The request or response cannot create a dialog.
    #[error("cannot create a dialog: {0}")]
    NoDialog(&'static str),
    /// An in-dialog request does not belong to this dialog.
    #[error("request does not belong to this dialog")]
    NotInDialog,
    /// An in-dialog request arrived with a CSeq lower than the last one seen (§12.2.2): the
    /// transaction user answers 500.
    #[error("CSeq {got} is lower than the dialog's remote CSeq {last}")]
    CSeqOutOfOrder {
        /// The CSeq number of the request.
        got: u32,
        /// The highest CSeq number seen in the dialog so far.
        last: u32,
    },
    /// The dialog has been terminated; no more requests can be built in it.
    #[error("dialog is terminated")]
    DialogTerminated,
}
