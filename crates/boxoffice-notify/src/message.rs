//! What a mail says: the facts recorded for a message (stored as JSON when
//! the event is consumed, so a retry sends the same mail) and the text and
//! HTML templates that turn them into a subject and bodies. No I/O here.
//!
//! Everything that came from a user or an organiser (names, titles,
//! reasons) is escaped in the HTML body.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A ticket as the confirmation lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketFacts {
    /// "Seat 12" or "Standing 3": what the holder reads.
    pub label: String,
    /// The signed code the door scans (also in the QR image).
    pub code: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyFacts {
    pub currency: String,
    pub amount_minor: i64,
}

impl MoneyFacts {
    pub(crate) fn display(&self) -> String {
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let amount = self.amount_minor.unsigned_abs();
        format!(
            "{sign}{} {}.{:02}",
            self.currency,
            amount / 100,
            amount % 100
        )
    }
}

/// The event a mail is about, as the catalog last described it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFacts {
    pub event_id: Uuid,
    pub title: String,
    pub start_time: Option<DateTime<Utc>>,
    pub venue: String,
    pub city: String,
}

impl EventFacts {
    fn title(&self) -> &str {
        if self.title.is_empty() {
            "your event"
        } else {
            &self.title
        }
    }

    fn when_and_where(&self) -> String {
        let when = self
            .start_time
            .map(|time| time.format("%A %-d %B %Y, %H:%M UTC").to_string());
        let place = match (self.venue.is_empty(), self.city.is_empty()) {
            (false, false) => Some(format!("{}, {}", self.venue, self.city)),
            (false, true) => Some(self.venue.clone()),
            _ => None,
        };
        match (when, place) {
            (Some(when), Some(place)) => format!("{when} at {place}"),
            (Some(when), None) => when,
            (None, Some(place)) => place,
            (None, None) => "time and place to be announced".to_owned(),
        }
    }
}

/// One message's content, by kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Facts {
    BookingConfirmed {
        booking_id: Uuid,
        event: EventFacts,
        tickets: Vec<TicketFacts>,
        total: MoneyFacts,
    },
    BookingCancelled {
        booking_id: Uuid,
        event: EventFacts,
        reason: String,
    },
    RefundIssued {
        booking_id: Uuid,
        amount: MoneyFacts,
    },
    EventChanged {
        event: EventFacts,
    },
    EventCancelled {
        event: EventFacts,
        reason: String,
    },
    /// Marketing: a new event by a performer the user has seen.
    EventAnnounced {
        event: EventFacts,
        performers: String,
    },
    /// An admin's answer to the user's question.
    QuestionAnswered {
        question_id: Uuid,
        subject: String,
        answer: String,
    },
    /// Seats offered from the event's waitlist, held for the user until
    /// `expires_at`.
    WaitlistOffer {
        event: EventFacts,
        /// The hold to book: "events/{event_id}/holds/{hold_id}".
        hold: String,
        seats: u32,
        expires_at: Option<DateTime<Utc>>,
        /// Where to book it; set by the sender from the public URL.
        #[serde(default)]
        link: String,
    },
    /// To the admin who registered an integrator webhook endpoint: it kept
    /// failing and is disabled.
    WebhookEndpointDisabled {
        endpoint_id: Uuid,
        url: String,
        reason: String,
        disabled_at: Option<DateTime<Utc>>,
    },
}

impl Facts {
    /// The kind as stored (`messages.kind`) and counted.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BookingConfirmed { .. } => "booking_confirmed",
            Self::BookingCancelled { .. } => "booking_cancelled",
            Self::RefundIssued { .. } => "refund_issued",
            Self::EventChanged { .. } => "event_changed",
            Self::EventCancelled { .. } => "event_cancelled",
            Self::EventAnnounced { .. } => "event_announced",
            Self::QuestionAnswered { .. } => "question_answered",
            Self::WaitlistOffer { .. } => "waitlist_offer",
            Self::WebhookEndpointDisabled { .. } => "webhook_endpoint_disabled",
        }
    }

    /// Fills in what depends on where users reach the web app.
    pub fn with_public_url(mut self, public_url: &str) -> Self {
        if let Self::WaitlistOffer { event, link, .. } = &mut self {
            *link = format!(
                "{}/events/{}/waitlist",
                public_url.trim_end_matches('/'),
                event.event_id
            );
        }
        self
    }

    /// Marketing mail may be opted out of; ticket mail never.
    pub fn is_marketing(&self) -> bool {
        matches!(self, Self::EventAnnounced { .. })
    }
}

/// A message ready for the wire (without QR images, which [`crate::mail`]
/// adds per ticket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Subjects are one line: no control characters from a title.
fn subject_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

fn reason_text(reason: &str) -> &str {
    match reason {
        "user" => "you cancelled it",
        "expired" => "it was not paid in time",
        "event_cancelled" => "the event was cancelled",
        "" => "it was cancelled",
        other => other,
    }
}

/// Renders `facts` for `name`; `unsubscribe` is the link marketing mail
/// carries (ticket mail has none).
pub fn render(facts: &Facts, name: &str, unsubscribe: Option<&str>) -> Rendered {
    let greeting = if name.trim().is_empty() {
        "Hello,".to_owned()
    } else {
        format!("Hello {},", name.trim())
    };
    let (subject, paragraphs, tickets): (String, Vec<String>, &[TicketFacts]) = match facts {
        Facts::BookingConfirmed {
            booking_id,
            event,
            tickets,
            total,
        } => (
            format!("Your tickets for {}", event.title()),
            vec![
                format!(
                    "Your booking {booking_id} is confirmed: {} ticket(s) for {}, {}.",
                    tickets.len(),
                    event.title(),
                    event.when_and_where()
                ),
                format!("Total paid: {}.", total.display()),
                "Show a ticket's QR image (attached) or its code at the door.".to_owned(),
            ],
            tickets,
        ),
        Facts::BookingCancelled {
            booking_id,
            event,
            reason,
        } => (
            format!("Booking cancelled: {}", event.title()),
            vec![format!(
                "Your booking {booking_id} for {} is cancelled: {}. Its tickets no longer admit anyone.",
                event.title(),
                reason_text(reason)
            )],
            &[],
        ),
        Facts::RefundIssued { booking_id, amount } => (
            "Your refund is on its way".to_owned(),
            vec![format!(
                "We refunded {} for booking {booking_id} to the card you paid with.",
                amount.display()
            )],
            &[],
        ),
        Facts::EventChanged { event } => (
            format!("{} has changed", event.title()),
            vec![
                format!(
                    "{} is now on {}. Your tickets stay valid.",
                    event.title(),
                    event.when_and_where()
                ),
                "If you can no longer go, you can cancel your booking from your account."
                    .to_owned(),
            ],
            &[],
        ),
        Facts::EventCancelled { event, reason } => (
            format!("{} is cancelled", event.title()),
            vec![format!(
                "{} ({}) is cancelled{}. Your bookings are cancelled and refunded.",
                event.title(),
                event.when_and_where(),
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                }
            )],
            &[],
        ),
        Facts::EventAnnounced { event, performers } => (
            format!("New: {}", event.title()),
            vec![format!(
                "{performers}, whom you have seen with us, will be at {}: {}.",
                event.title(),
                event.when_and_where()
            )],
            &[],
        ),
        Facts::WaitlistOffer {
            event,
            hold,
            seats,
            expires_at,
            link,
        } => (
            format!("Seats for you: {}", event.title()),
            vec![
                format!(
                    "{seats} seat(s) for {} ({}) came back and are held for you from the waitlist.",
                    event.title(),
                    event.when_and_where()
                ),
                match expires_at {
                    Some(time) => format!(
                        "They are yours to book until {}; after that they go to the next in line.",
                        time.format("%A %-d %B %Y, %H:%M:%S UTC")
                    ),
                    None => "They are yours to book for a short while; after that they go to the next in line.".to_owned(),
                },
                format!("Book them at {link} (hold {hold})."),
            ],
            &[],
        ),
        Facts::WebhookEndpointDisabled {
            endpoint_id,
            url,
            reason,
            disabled_at,
        } => (
            "A webhook endpoint was disabled".to_owned(),
            vec![
                format!(
                    "Your webhook endpoint {url} (webhook_endpoints/{endpoint_id}) kept failing and was disabled{}: {reason}.",
                    match disabled_at {
                        Some(time) => format!(" at {}", time.format("%A %-d %B %Y, %H:%M:%S UTC")),
                        None => String::new(),
                    }
                ),
                "Nothing more is sent to it. Fix the receiver, then enable the endpoint again (UpdateWebhookEndpoint) and redeliver what it missed.".to_owned(),
            ],
            &[],
        ),
        Facts::QuestionAnswered {
            question_id,
            subject,
            answer,
        } => (
            format!("Re: {subject}"),
            vec![
                format!("We have answered your question \"{subject}\" (questions/{question_id}):"),
                answer.clone(),
                "Reply by adding to the question from your account.".to_owned(),
            ],
            &[],
        ),
    };
    let mut text = format!("{greeting}\n\n");
    for paragraph in &paragraphs {
        text.push_str(paragraph);
        text.push_str("\n\n");
    }
    if !tickets.is_empty() {
        text.push_str("Your tickets:\n");
        for ticket in tickets {
            text.push_str(&format!("- {}: {}\n", ticket.label, ticket.code));
        }
        text.push('\n');
    }
    text.push_str("Boxoffice\n");
    if let Some(link) = unsubscribe {
        text.push_str(&format!(
            "\nYou get this because you have seen one of these performers with us. Unsubscribe: {link}\n"
        ));
    }
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body style=\"font-family: sans-serif\">\n",
    );
    html.push_str(&format!("<p>{}</p>\n", escape_html(&greeting)));
    for paragraph in &paragraphs {
        html.push_str(&format!("<p>{}</p>\n", escape_html(paragraph)));
    }
    if !tickets.is_empty() {
        html.push_str("<ul>\n");
        for (index, ticket) in tickets.iter().enumerate() {
            html.push_str(&format!(
                "<li><strong>{}</strong><br><img src=\"cid:ticket-{index}\" alt=\"QR code of {}\" width=\"200\" height=\"200\"><br><code>{}</code></li>\n",
                escape_html(&ticket.label),
                escape_html(&ticket.label),
                escape_html(&ticket.code)
            ));
        }
        html.push_str("</ul>\n");
    }
    html.push_str("<p>Boxoffice</p>\n");
    if let Some(link) = unsubscribe {
        html.push_str(&format!(
            "<p style=\"font-size: small\">You get this because you have seen one of these performers with us. <a href=\"{}\">Unsubscribe</a></p>\n",
            escape_html(link)
        ));
    }
    html.push_str("</body></html>\n");
    Rendered {
        subject: subject_text(&subject),
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(title: &str) -> EventFacts {
        EventFacts {
            event_id: Uuid::nil(),
            title: title.into(),
            start_time: DateTime::from_timestamp(1_800_000_000, 0),
            venue: "Brudenell".into(),
            city: "Leeds".into(),
        }
    }

    #[test]
    fn a_confirmation_lists_every_code_in_both_bodies() {
        let facts = Facts::BookingConfirmed {
            booking_id: Uuid::nil(),
            event: event("Night <b>Owls</b>"),
            tickets: vec![
                TicketFacts {
                    label: "Standing 1".into(),
                    code: "bt2.aaa.sig".into(),
                },
                TicketFacts {
                    label: "Standing 2".into(),
                    code: "bt2.bbb.sig".into(),
                },
            ],
            total: MoneyFacts {
                currency: "GBP".into(),
                amount_minor: 5250,
            },
        };
        let mail = render(&facts, "Ada", None);
        assert_eq!(mail.subject, "Your tickets for Night <b>Owls</b>");
        assert!(mail.text.contains("- Standing 1: bt2.aaa.sig"));
        assert!(mail.text.contains("GBP 52.50"));
        assert!(mail.html.contains("bt2.bbb.sig"));
        assert!(mail.html.contains("cid:ticket-1"));
        // The organiser's markup is shown, never interpreted.
        assert!(mail.html.contains("Night &lt;b&gt;Owls&lt;/b&gt;"));
        assert!(!mail.html.contains("<b>Owls"));
        assert!(!mail.text.contains("Unsubscribe"));
        assert!(!facts.is_marketing());
    }

    #[test]
    fn marketing_carries_its_unsubscribe_link() {
        let facts = Facts::EventAnnounced {
            event: event("Encore"),
            performers: "The \"Band\"".into(),
        };
        let mail = render(&facts, "", Some("http://x/unsubscribe?token=a&b"));
        assert!(facts.is_marketing());
        assert!(
            mail.text
                .contains("Unsubscribe: http://x/unsubscribe?token=a&b")
        );
        assert!(
            mail.html
                .contains("href=\"http://x/unsubscribe?token=a&amp;b\"")
        );
        assert!(mail.html.contains("The &quot;Band&quot;"));
    }

    #[test]
    fn facts_round_trip_as_json() {
        let facts = Facts::RefundIssued {
            booking_id: Uuid::now_v7(),
            amount: MoneyFacts {
                currency: "EUR".into(),
                amount_minor: 1999,
            },
        };
        let json = serde_json::to_value(&facts).expect("serializes");
        assert_eq!(json["kind"], "refund_issued");
        let back: Facts = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, facts);
        assert_eq!(
            render(&back, "Bo", None).subject,
            "Your refund is on its way"
        );
        assert!(render(&back, "Bo", None).text.contains("EUR 19.99"));
    }

    #[test]
    fn a_subject_is_one_line() {
        let facts = Facts::EventChanged {
            event: event("Line\r\nBcc: victim@example.com"),
        };
        let mail = render(&facts, "x", None);
        assert!(!mail.subject.contains('\n') && !mail.subject.contains('\r'));
    }
}
