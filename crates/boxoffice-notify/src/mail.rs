//! Building the MIME message of a rendered mail: text and HTML
//! alternatives, a QR image per ticket inline (`cid:ticket-N`, as the HTML
//! refers to them), a `Message-ID` made from the message's id (so a copy
//! sent twice after a crash is recognisably the same mail) and, on
//! marketing mail, `List-Unsubscribe`.

use anyhow::Context as _;
use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart};
use uuid::Uuid;

use crate::message::{Rendered, TicketFacts};

/// The `Message-ID` of message `id` sent from `from`.
pub fn message_id(id: Uuid, from: &Mailbox) -> String {
    format!("<{}@{}>", id.simple(), from.email.domain())
}

pub(crate) fn build(
    from: &Mailbox,
    to: Mailbox,
    id: Uuid,
    rendered: &Rendered,
    tickets: &[TicketFacts],
    unsubscribe: Option<&str>,
) -> anyhow::Result<Message> {
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(rendered.subject.clone())
        .message_id(Some(message_id(id, from)));
    if let Some(link) = unsubscribe {
        builder = builder.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe"),
            format!("<{link}>"),
        ));
    }
    let alternative =
        MultiPart::alternative_plain_html(rendered.text.clone(), rendered.html.clone());
    let message = if tickets.is_empty() {
        builder.multipart(alternative)
    } else {
        let png = ContentType::parse("image/png").context("the PNG content type")?;
        let mut related = MultiPart::related().multipart(alternative);
        for (index, ticket) in tickets.iter().enumerate() {
            let image = crate::qr::png(&ticket.code)?;
            related = related.singlepart(
                Attachment::new_inline_with_name(
                    format!("ticket-{index}"),
                    format!("ticket-{}.png", index + 1),
                )
                .body(image, png.clone()),
            );
        }
        builder.multipart(related)
    };
    message.context("building a message")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{EventFacts, Facts, MoneyFacts, render};

    #[test]
    fn a_confirmation_carries_a_qr_image_per_ticket() {
        let from: Mailbox = "Boxoffice <tickets@boxoffice.test>"
            .parse()
            .expect("mailbox");
        let tickets = vec![
            TicketFacts {
                label: "Ticket 1".into(),
                code: "bt2.one".into(),
            },
            TicketFacts {
                label: "Ticket 2".into(),
                code: "bt2.two".into(),
            },
        ];
        let facts = Facts::BookingConfirmed {
            booking_id: Uuid::nil(),
            event: EventFacts::default(),
            tickets: tickets.clone(),
            total: MoneyFacts {
                currency: "GBP".into(),
                amount_minor: 100,
            },
        };
        let id = Uuid::now_v7();
        let message = build(
            &from,
            "Ada <ada@example.com>".parse().expect("mailbox"),
            id,
            &render(&facts, "Ada", None),
            &tickets,
            None,
        )
        .expect("builds");
        let bytes = String::from_utf8(message.formatted()).expect("ascii");
        assert_eq!(bytes.matches("Content-Type: image/png").count(), 2);
        assert!(bytes.contains("Content-ID: <ticket-1>"));
        assert!(bytes.contains(&format!("Message-ID: <{}@boxoffice.test>", id.simple())));
        assert!(!bytes.contains("List-Unsubscribe"));
    }
}
