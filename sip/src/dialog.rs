//! Dialogs (RFC 3261 §12): the peer-to-peer relationship an INVITE sets up, identified by
//! Call-ID, local tag and remote tag, holding what is needed to send requests within it — the
//! route set, the remote target, and both CSeq sequences.
//!
//! Start with [`Dialog`]: [`Dialog::uac`] creates it from our INVITE and a 1xx-with-tag or 2xx
//! response, [`Dialog::uas`] from a received INVITE and the tag we answer with.
//! [`Dialog::request`] builds BYE, re-INVITE, REFER, INFO …; [`Dialog::ack`] the ACK for a
//! 2xx; [`Dialog::receive_request`] checks an incoming request against the dialog (§12.2.2).
//! [`DialogId`] finds the dialog an incoming message belongs to. Sending goes through the
//! transaction layer; where to is [`Dialog::next_hop`]. Not covered: the `sips` secure flag,
//! forking (one early dialog per remote tag is the caller's bookkeeping) and RFC 3262 PRACK.

use rsip::headers::UntypedHeader;
use rsip::{Header, Method, Request, Response};

use crate::message::{self, header_param, list_values, tag_param, uri_part, ParseError};
use crate::Error;

/// Call-ID, local tag and remote tag (§12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// The Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog a received request belongs to (local tag = To tag), if it is in-dialog.
    pub fn of_request(request: &Request) -> Option<Self> {
        Some(Self {
            call_id: message::call_id(&request.headers).ok()?.to_owned(),
            local_tag: message::to_tag(&request.headers)?.to_owned(),
            remote_tag: message::from_tag(&request.headers)?.to_owned(),
        })
    }

    /// The dialog a response to our request belongs to (local tag = From tag).
    pub fn of_response(response: &Response) -> Option<Self> {
        Some(Self {
            call_id: message::call_id(&response.headers).ok()?.to_owned(),
            local_tag: message::from_tag(&response.headers)?.to_owned(),
            remote_tag: message::to_tag(&response.headers)?.to_owned(),
        })
    }
}

/// Whether the dialog has seen its 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response with a tag.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
    /// A BYE was sent or received.
    Terminated,
}

/// One dialog's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    id: DialogId,
    state: DialogState,
    /// Our From value for requests we send (with our tag).
    local: String,
    /// Our To value for requests we send (with the peer's tag).
    remote: String,
    remote_target: String,
    /// Route header values in the order they are sent.
    route_set: Vec<String>,
    /// The last CSeq we used.
    local_seq: u32,
    /// The highest CSeq the peer used; `None` until its first request.
    remote_seq: Option<u32>,
}

impl Dialog {
    /// Creates the dialog of our INVITE `request` from a `response` to it: a 101–199 with a To
    /// tag gives an early dialog, a 2xx a confirmed one (§12.1.2).
    pub fn uac(request: &Request, response: &Response) -> Result<Self, Error> {
        let code = response.status_code.code();
        if !(101..300).contains(&code) {
            return Err(Error::NoDialog("only 101-299 responses create dialogs"));
        }
        let id =
            DialogId::of_response(response).ok_or(Error::NoDialog("response has no To tag"))?;
        let (local_seq, _) = message::cseq(&request.headers)?;
        let local =
            message::from_value(&request.headers).ok_or(Error::NoDialog("request has no From"))?;
        let remote =
            message::to_value(&response.headers).ok_or(Error::NoDialog("response has no To"))?;
        let mut dialog = Self {
            id,
            state: DialogState::Early,
            local: local.to_owned(),
            remote: remote.to_owned(),
            remote_target: String::new(),
            route_set: Vec::new(),
            local_seq,
            remote_seq: None,
        };
        dialog.take_uac_routing(response)?;
        if code >= 200 {
            dialog.state = DialogState::Confirmed;
        }
        Ok(dialog)
    }

    /// Creates the dialog of a received INVITE answered with To tag `local_tag` (§12.1.1).
    /// The dialog is confirmed: the caller creates it when sending its 2xx (or a 1xx with the
    /// tag, after which [`Dialog::state`] matters little to a UAS).
    pub fn uas(request: &Request, local_tag: &str) -> Result<Self, Error> {
        let call_id = message::call_id(&request.headers)?.to_owned();
        let remote_tag = message::from_tag(&request.headers)
            .ok_or(Error::NoDialog("request has no From tag"))?
            .to_owned();
        let (remote_seq, _) = message::cseq(&request.headers)?;
        let to = message::to_value(&request.headers).ok_or(Error::NoDialog("request has no To"))?;
        let local = match tag_param(to) {
            Some(_) => to.to_owned(),
            None => format!("{to};tag={local_tag}"),
        };
        let remote = message::from_value(&request.headers)
            .ok_or(Error::NoDialog("request has no From"))?
            .to_owned();
        let remote_target =
            contact_uri(&request.headers).ok_or(Error::NoDialog("request has no Contact"))?;
        let route_set = list_values(&request.headers, |h| match h {
            Header::RecordRoute(r) => Some(r.value()),
            _ => None,
        })
        .map(str::to_owned)
        .collect();
        Ok(Self {
            id: DialogId {
                call_id,
                local_tag: local_tag.to_owned(),
                remote_tag,
            },
            state: DialogState::Confirmed,
            local,
            remote,
            remote_target,
            route_set,
            local_seq: 0,
            remote_seq: Some(remote_seq),
        })
    }

    /// The dialog's identity.
    pub fn id(&self) -> &DialogId {
        &self.id
    }

    /// Early, confirmed or terminated.
    pub fn state(&self) -> DialogState {
        self.state
    }

    /// The URI requests are addressed to (the peer's Contact).
    pub fn remote_target(&self) -> &str {
        &self.remote_target
    }

    /// The Route values sent with each request, in order.
    pub fn route_set(&self) -> &[String] {
        &self.route_set
    }

    /// The last CSeq number we used.
    pub fn local_seq(&self) -> u32 {
        self.local_seq
    }

    /// Where requests physically go: the first route's URI, or the remote target.
    pub fn next_hop(&self) -> &str {
        self.route_set
            .first()
            .map_or(self.remote_target.as_str(), |r| uri_part(r))
    }

    /// UAC side: a further 1xx/2xx for our INVITE. A 2xx confirms an early dialog and
    /// recomputes its route set (§13.2.2.4); any response with a Contact refreshes the target.
    pub fn update_from_response(&mut self, response: &Response) -> Result<(), Error> {
        if DialogId::of_response(response).as_ref() != Some(&self.id) {
            return Err(Error::NotInDialog);
        }
        let code = response.status_code.code();
        if (200..300).contains(&code) && self.state == DialogState::Early {
            self.take_uac_routing(response)?;
            self.state = DialogState::Confirmed;
        } else if let Some(target) = contact_uri(&response.headers) {
            self.remote_target = target;
        }
        Ok(())
    }

    /// Checks a received request against the dialog (§12.2.2): identity, CSeq order (a lower
    /// CSeq is [`Error::CSeqOutOfOrder`], answer 500), target refresh by re-INVITE/UPDATE, and
    /// BYE ending the dialog. ACK and CANCEL reuse their INVITE's CSeq and are not ordered.
    pub fn receive_request(&mut self, request: &Request) -> Result<(), Error> {
        if DialogId::of_request(request).as_ref() != Some(&self.id) {
            return Err(Error::NotInDialog);
        }
        let (cseq, _) = message::cseq(&request.headers)?;
        if !matches!(request.method, Method::Ack | Method::Cancel) {
            if let Some(last) = self.remote_seq {
                if cseq < last {
                    return Err(Error::CSeqOutOfOrder { got: cseq, last });
                }
            }
            self.remote_seq = Some(cseq);
        }
        match request.method {
            Method::Invite | Method::Update => {
                if let Some(target) = contact_uri(&request.headers) {
                    self.remote_target = target;
                }
            }
            Method::Bye => self.state = DialogState::Terminated,
            _ => {}
        }
        Ok(())
    }

    /// Builds a request within the dialog (BYE, re-INVITE, REFER, INFO, UPDATE, …) with the
    /// next local CSeq and the given top `via` value ([`message::via_value`] with a fresh
    /// branch). The caller adds Contact, Refer-To, a body as the method needs. Sending BYE
    /// terminates the dialog.
    pub fn request(&mut self, method: Method, via: &str) -> Result<Request, Error> {
        if self.state == DialogState::Terminated {
            return Err(Error::DialogTerminated);
        }
        if matches!(method, Method::Ack | Method::Cancel) {
            return Err(Error::TransactionState {
                action: "build ACK or CANCEL as a new dialog request",
            });
        }
        self.local_seq = self.local_seq.wrapping_add(1) & 0x7fff_ffff;
        let request = self.build(method, self.local_seq, via)?;
        if method == Method::Bye {
            self.state = DialogState::Terminated;
        }
        Ok(request)
    }

    /// Builds the ACK for a 2xx to the INVITE with CSeq `invite_cseq` (§13.2.2.4); it goes
    /// out with [`crate::transaction::TransactionLayer::send_stateless`].
    pub fn ack(&self, invite_cseq: u32, via: &str) -> Result<Request, Error> {
        self.build(Method::Ack, invite_cseq, via)
    }

    fn build(&self, method: Method, cseq: u32, via: &str) -> Result<Request, Error> {
        let strict_first = self
            .route_set
            .split_first()
            .filter(|(first, _)| header_param(uri_part(first), "lr").is_none());
        let (target, routes): (&str, Vec<&str>) = match strict_first {
            // §12.2.1.1: a strict router gets the request URI; the target goes last in Route.
            Some((first, rest)) => {
                let mut routes: Vec<&str> = rest.iter().map(String::as_str).collect();
                routes.push(&self.remote_target);
                (uri_part(first), routes)
            }
            None => (
                &self.remote_target,
                self.route_set.iter().map(String::as_str).collect(),
            ),
        };
        let uri = rsip::Uri::try_from(target)
            .map_err(|_| Error::Malformed(ParseError::InvalidHeader("Contact")))?;
        let mut headers = Vec::with_capacity(8 + routes.len());
        headers.push(Header::Via(rsip::headers::Via::new(via)));
        headers.push(Header::MaxForwards(rsip::headers::MaxForwards::new("70")));
        headers.push(Header::From(rsip::headers::From::new(self.local.as_str())));
        headers.push(Header::To(rsip::headers::To::new(self.remote.as_str())));
        headers.push(Header::CallId(rsip::headers::CallId::new(
            self.id.call_id.as_str(),
        )));
        headers.push(Header::CSeq(rsip::headers::CSeq::new(format!(
            "{cseq} {method}"
        ))));
        for route in routes {
            let value = if route.trim_start().starts_with('<') {
                route.to_owned()
            } else {
                format!("<{route}>")
            };
            headers.push(Header::Route(rsip::headers::Route::new(value)));
        }
        Ok(Request {
            method,
            uri,
            version: rsip::Version::V2,
            headers: headers.into(),
            body: Vec::new(),
        })
    }

    fn take_uac_routing(&mut self, response: &Response) -> Result<(), Error> {
        let mut routes: Vec<String> = list_values(&response.headers, |h| match h {
            Header::RecordRoute(r) => Some(r.value()),
            _ => None,
        })
        .map(str::to_owned)
        .collect();
        routes.reverse();
        self.route_set = routes;
        self.remote_target =
            contact_uri(&response.headers).ok_or(Error::NoDialog("response has no Contact"))?;
        Ok(())
    }
}

fn contact_uri(headers: &rsip::Headers) -> Option<String> {
    list_values(headers, |h| match h {
        Header::Contact(c) => Some(c.value()),
        _ => None,
    })
    .next()
    .map(uri_part)
    .filter(|uri| rsip::Uri::try_from(*uri).is_ok())
    .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse_datagram, response_to, Limits};
    use rsip::SipMessage;

    fn invite(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 10 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
{extra}Content-Length: 0\r\n\r\n"
        );
        match parse_datagram(text.as_bytes(), &Limits::default()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("bad test request: {other:?}"),
        }
    }

    fn answer(request: &Request, code: u16, extra: &[Header]) -> Response {
        let mut r = response_to(request, code, Some("314159"));
        r.headers.push(Header::Contact(rsip::headers::Contact::new(
            "<sip:bob@192.0.2.4>",
        )));
        for h in extra {
            r.headers.push(h.clone());
        }
        r
    }

    fn value_of(request: &Request, pick: fn(&Header) -> Option<&str>) -> Vec<String> {
        request
            .headers
            .iter()
            .filter_map(pick)
            .map(str::to_owned)
            .collect()
    }

    const VIA: &str = "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKnew";

    #[test]
    fn uac_dialog_from_2xx_builds_bye_through_the_reversed_route_set() {
        let inv = invite("");
        let ok = answer(
            &inv,
            200,
            &[Header::RecordRoute(rsip::headers::RecordRoute::new(
                "<sip:p2.example.com;lr>, <sip:p1.example.com;lr>",
            ))],
        );
        let mut dialog = Dialog::uac(&inv, &ok).expect("dialog");
        assert_eq!(dialog.state(), DialogState::Confirmed);
        assert_eq!(dialog.id().local_tag, "9fxced76sl");
        assert_eq!(dialog.id().remote_tag, "314159");
        assert_eq!(dialog.next_hop(), "sip:p1.example.com;lr");
        let bye = dialog.request(Method::Bye, VIA).expect("bye");
        assert_eq!(bye.uri.to_string(), "sip:bob@192.0.2.4");
        assert_eq!(message::cseq(&bye.headers), Ok((11, Method::Bye)));
        assert_eq!(message::from_tag(&bye.headers), Some("9fxced76sl"));
        assert_eq!(message::to_tag(&bye.headers), Some("314159"));
        let routes = value_of(&bye, |h| match h {
            Header::Route(r) => Some(r.value()),
            _ => None,
        });
        assert_eq!(
            routes,
            vec!["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        assert!(message::validate(&bye.clone().into()).is_ok());
        assert_eq!(dialog.state(), DialogState::Terminated);
        assert_eq!(
            dialog.request(Method::Bye, VIA),
            Err(Error::DialogTerminated)
        );
    }

    #[test]
    fn ack_for_2xx_reuses_the_invite_cseq() {
        let inv = invite("");
        let dialog = Dialog::uac(&inv, &answer(&inv, 200, &[])).expect("dialog");
        let ack = dialog.ack(10, VIA).expect("ack");
        assert_eq!(message::cseq(&ack.headers), Ok((10, Method::Ack)));
        assert!(message::validate(&ack.into()).is_ok());
    }

    #[test]
    fn early_dialog_is_confirmed_by_2xx() {
        let inv = invite("");
        let mut dialog = Dialog::uac(&inv, &answer(&inv, 180, &[])).expect("early");
        assert_eq!(dialog.state(), DialogState::Early);
        dialog
            .update_from_response(&answer(&inv, 200, &[]))
            .expect("2xx");
        assert_eq!(dialog.state(), DialogState::Confirmed);
        let mut other = answer(&inv, 200, &[]);
        other.headers.retain(|h| !matches!(h, Header::To(_)));
        other.headers.push(Header::To(rsip::headers::To::new(
            "<sip:bob@biloxi.example.com>;tag=zzz",
        )));
        assert_eq!(dialog.update_from_response(&other), Err(Error::NotInDialog));
        assert!(Dialog::uac(&inv, &response_to(&inv, 100, None)).is_err());
    }

    #[test]
    fn uas_dialog_orders_cseq_and_refreshes_target() {
        let inv = invite("Record-Route: <sip:p1.example.com;lr>\r\n");
        let mut dialog = Dialog::uas(&inv, "uas1").expect("dialog");
        assert_eq!(dialog.route_set(), &["<sip:p1.example.com;lr>".to_owned()]);
        assert_eq!(dialog.remote_target(), "sip:alice@pc33.atlanta.example.com");
        // Our BYE goes from the To (with our tag) to the caller's From.
        let mut ours = dialog.clone();
        let bye = ours.request(Method::Bye, VIA).expect("bye");
        assert_eq!(message::from_tag(&bye.headers), Some("uas1"));
        assert_eq!(message::to_tag(&bye.headers), Some("9fxced76sl"));
        assert_eq!(message::cseq(&bye.headers), Ok((1, Method::Bye)));

        let in_dialog = |method: &str, cseq: u32, contact: &str| {
            let text = format!(
                "{method} sip:bob@192.0.2.4 SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK{cseq}\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=uas1\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <{contact}>\r\n\
Content-Length: 0\r\n\r\n"
            );
            match parse_datagram(text.as_bytes(), &Limits::default()) {
                Ok(SipMessage::Request(r)) => r,
                other => panic!("bad test request: {other:?}"),
            }
        };
        assert_eq!(
            dialog.receive_request(&in_dialog("INFO", 9, "sip:a@x")),
            Err(Error::CSeqOutOfOrder { got: 9, last: 10 })
        );
        dialog
            .receive_request(&in_dialog("INVITE", 11, "sip:alice@198.51.100.7"))
            .expect("re-INVITE");
        assert_eq!(dialog.remote_target(), "sip:alice@198.51.100.7");
        dialog
            .receive_request(&in_dialog("ACK", 11, "sip:a@x"))
            .expect("ack");
        dialog
            .receive_request(&in_dialog("BYE", 12, "sip:a@x"))
            .expect("bye");
        assert_eq!(dialog.state(), DialogState::Terminated);
    }

    #[test]
    fn strict_router_gets_the_request_uri() {
        let inv = invite("");
        let ok = answer(
            &inv,
            200,
            &[Header::RecordRoute(rsip::headers::RecordRoute::new(
                "<sip:strict.example.com>",
            ))],
        );
        let mut dialog = Dialog::uac(&inv, &ok).expect("dialog");
        let bye = dialog.request(Method::Bye, VIA).expect("bye");
        assert_eq!(bye.uri.to_string(), "sip:strict.example.com");
        let routes = value_of(&bye, |h| match h {
            Header::Route(r) => Some(r.value()),
            _ => None,
        });
        assert_eq!(routes, vec!["<sip:bob@192.0.2.4>"]);
    }
}
