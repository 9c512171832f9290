//! The tonic face of checkout: wire messages are parsed into domain values
//! here (and only here), and stored bookings turned back into messages,
//! with line items and signed ticket codes.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use boxoffice_contracts::checkout::v1 as pb;
use boxoffice_runtime::Caller;
use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};
use tracing::instrument;
use uuid::Uuid;

use crate::domain::door::{self as door_domain, TicketRef};
use crate::domain::promo::{self, PromoCode, PromoCodeUsage, PromoDiscount};
use crate::domain::ticket_code::{TicketClaims, TicketSigner};
use crate::domain::{self, BookingState, FieldError};
use crate::payment::paypal::PAYPAL_METHOD;
use crate::service::Checkout;
use crate::store::BookingRecord;
use crate::store::door::{HeldTicket, TransferRecord, TransferState};
use crate::store::loyalty::LoyaltySummary;

const DEFAULT_PAGE_SIZE: i32 = 20;
const MAX_PAGE_SIZE: i32 = 100;

#[derive(Clone)]
pub struct CheckoutGrpc {
    checkout: Arc<Checkout>,
    signer: TicketSigner,
}

impl CheckoutGrpc {
    pub fn new(checkout: Arc<Checkout>, signer: TicketSigner) -> Self {
        Self { checkout, signer }
    }
}

pub(crate) fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn encode_page_token(booking: &BookingRecord) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{}:{}",
        booking.created_at.timestamp_micros(),
        booking.id
    ))
}

fn decode_page_token(token: &str) -> Result<Option<(DateTime<Utc>, Uuid)>, FieldError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || FieldError::new("page_token", "is not a token this service issued");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (micros, id) = raw.split_once(':').ok_or_else(bad)?;
    let time =
        DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok(Some((time, Uuid::parse_str(id).map_err(|_| bad())?)))
}

fn state_to_pb(state: BookingState) -> pb::BookingState {
    match state {
        BookingState::Pending => pb::BookingState::Pending,
        BookingState::Confirming => pb::BookingState::Confirming,
        BookingState::Confirmed => pb::BookingState::Confirmed,
        BookingState::Cancelling => pb::BookingState::Cancelling,
        BookingState::Cancelled => pb::BookingState::Cancelled,
        BookingState::Expired => pb::BookingState::Expired,
    }
}

/// A booking as its owner sees it. Ticket codes appear only while the
/// booking is confirmed; the payment's id is the sale's nonce.
pub fn booking_to_pb(booking: &BookingRecord, signer: &TicketSigner) -> pb::Booking {
    let money = |amount_minor| pb::Money {
        currency_code: booking.currency_code.clone(),
        amount_minor,
    };
    let confirmed = booking.state == BookingState::Confirmed;
    let mut line_items: Vec<pb::LineItem> = booking
        .tickets
        .iter()
        .map(|ticket| {
            let label = domain::SeatLabel {
                section_name: ticket.section_name.clone().unwrap_or_default(),
                row_label: ticket.row_label.clone().unwrap_or_default(),
                seat_number: ticket.seat_number.clone().unwrap_or_default(),
                price_tier_name: ticket.price_tier_name.clone().unwrap_or_default(),
            };
            pb::LineItem {
                kind: pb::LineItemKind::Ticket as i32,
                // Bookings made before seats had names read as they did.
                description: if label.section_name.is_empty() {
                    format!("seat {}", ticket.seat_index)
                } else {
                    label.describe()
                },
                seat_index: ticket.seat_index,
                price_tier_id: ticket
                    .price_tier_id
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                amount: Some(money(ticket.price_minor)),
                section_name: label.section_name,
                row_label: label.row_label,
                seat_number: label.seat_number,
                price_tier_name: label.price_tier_name,
                promo_code: String::new(),
            }
        })
        .collect();
    line_items.push(pb::LineItem {
        kind: pb::LineItemKind::Fee as i32,
        description: format!("service fee ({} tickets)", booking.tickets.len()),
        amount: Some(money(booking.fees_minor)),
        ..Default::default()
    });
    if booking.tier_discount_minor > 0 {
        let tier = booking.loyalty_tier.clone().unwrap_or_default();
        line_items.push(pb::LineItem {
            kind: pb::LineItemKind::Discount as i32,
            description: format!("{tier} member discount"),
            amount: Some(money(-booking.tier_discount_minor)),
            ..Default::default()
        });
    }
    if booking.discount_minor > 0 {
        let code = booking.promo_code.clone().unwrap_or_default();
        line_items.push(pb::LineItem {
            kind: pb::LineItemKind::Discount as i32,
            description: format!("promo code {code}"),
            amount: Some(money(-booking.discount_minor)),
            promo_code: code,
            ..Default::default()
        });
    }
    if booking.loyalty_discount_minor > 0 {
        line_items.push(pb::LineItem {
            kind: pb::LineItemKind::Discount as i32,
            description: format!("{} loyalty points", booking.points_spent),
            amount: Some(money(-booking.loyalty_discount_minor)),
            ..Default::default()
        });
    }
    pb::Booking {
        name: domain::booking_name(booking.id),
        user_id: booking.user_id.to_string(),
        event_id: booking.event_id.to_string(),
        hold: domain::hold_name(booking.event_id, booking.hold_id),
        state: state_to_pb(booking.state) as i32,
        line_items,
        // A ticket given away is the recipient's (their ListTickets).
        tickets: booking
            .tickets
            .iter()
            .filter(|ticket| {
                ticket
                    .holder_id
                    .is_none_or(|holder| holder == booking.user_id)
            })
            .map(|ticket| pb::Ticket {
                seat_index: ticket.seat_index,
                section_id: ticket
                    .section_id
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                price_tier_id: ticket
                    .price_tier_id
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                price: Some(money(ticket.price_minor)),
                code: ticket
                    .code_nonce
                    .or(booking.payment_id)
                    .filter(|_| confirmed)
                    .map(|nonce| {
                        signer.sign(&TicketClaims {
                            event_id: booking.event_id,
                            booking_id: booking.id,
                            seat_index: ticket.seat_index,
                            nonce,
                        })
                    })
                    .unwrap_or_default(),
                name: TicketRef {
                    booking_id: booking.id,
                    seat_index: ticket.seat_index,
                }
                .name(),
                event_id: booking.event_id.to_string(),
                received: false,
            })
            .collect(),
        subtotal: Some(money(booking.subtotal_minor)),
        fees: Some(money(booking.fees_minor)),
        total: Some(money(booking.total_minor)),
        refunded: Some(money(match booking.state {
            BookingState::Cancelled => booking.refunded_minor,
            _ => 0,
        })),
        create_time: Some(timestamp(booking.created_at)),
        expire_time: Some(timestamp(booking.expire_time)),
        confirm_time: booking.confirmed_at.map(timestamp),
        cancel_time: booking.cancelled_at.map(timestamp),
        failure_reason: booking.failure_reason.clone().unwrap_or_default(),
        payment_action: None,
        discount: Some(money(
            booking.discount_minor + booking.loyalty_discount_minor + booking.tier_discount_minor,
        )),
        promo_code: booking.promo_code.clone().unwrap_or_default(),
        loyalty_points_spent: booking.points_spent,
        loyalty_tier: booking.loyalty_tier.clone().unwrap_or_default(),
    }
}

fn held_ticket_to_pb(held: &HeldTicket, signer: &TicketSigner) -> pb::Ticket {
    pb::Ticket {
        seat_index: held.ticket.seat_index,
        section_id: held.section_id.map(|id| id.to_string()).unwrap_or_default(),
        price_tier_id: held
            .price_tier_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        price: Some(pb::Money {
            currency_code: held.currency_code.clone(),
            amount_minor: held.price_minor,
        }),
        code: signer.sign(&TicketClaims {
            event_id: held.event_id,
            booking_id: held.ticket.booking_id,
            seat_index: held.ticket.seat_index,
            nonce: held.nonce,
        }),
        name: held.ticket.name(),
        event_id: held.event_id.to_string(),
        received: held.received,
    }
}

fn transfer_to_pb(transfer: &TransferRecord) -> pb::TicketTransfer {
    pb::TicketTransfer {
        name: door_domain::transfer_name(transfer.id),
        ticket: transfer.ticket.name(),
        event_id: transfer.event_id.to_string(),
        sender_id: transfer.sender_id.to_string(),
        recipient_email: transfer.recipient_email.clone(),
        state: match transfer.state {
            TransferState::Pending => pb::TransferState::Pending,
            TransferState::Accepted => pb::TransferState::Accepted,
            TransferState::Cancelled => pb::TransferState::Cancelled,
        } as i32,
        create_time: Some(timestamp(transfer.created_at)),
        decide_time: transfer.decided_at.map(timestamp),
    }
}

fn optional_uuid(field: &str, value: &str) -> Result<Option<Uuid>, FieldError> {
    if value.is_empty() {
        return Ok(None);
    }
    Uuid::parse_str(value)
        .map(Some)
        .map_err(|_| FieldError::new(field, "must be a UUID"))
}

fn optional_time(
    field: &str,
    value: Option<prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, FieldError> {
    value
        .map(|time| {
            u32::try_from(time.nanos)
                .ok()
                .and_then(|nanos| DateTime::from_timestamp(time.seconds, nanos))
                .ok_or_else(|| FieldError::new(field, "must be a valid timestamp"))
        })
        .transpose()
}

/// A new promo code from the wire; the rules (`validate_new_code`) are
/// checked by the use case.
fn promo_code_from_pb(code: pb::PromoCode) -> Result<PromoCode, FieldError> {
    let amount = || {
        let money = code
            .amount
            .clone()
            .ok_or_else(|| FieldError::new("promo_code.amount", "is required for this kind"))?;
        Ok::<_, FieldError>((money.currency_code, money.amount_minor))
    };
    let discount = match pb::PromoDiscountKind::try_from(code.kind)
        .unwrap_or(pb::PromoDiscountKind::Unspecified)
    {
        pb::PromoDiscountKind::PercentOff => PromoDiscount::PercentOff(
            u8::try_from(code.percent_off)
                .map_err(|_| FieldError::new("promo_code.percent_off", "must be from 1 to 100"))?,
        ),
        pb::PromoDiscountKind::AmountOff => {
            let (currency_code, minor) = amount()?;
            PromoDiscount::AmountOff {
                currency_code,
                minor,
            }
        }
        pb::PromoDiscountKind::FixedPrice => {
            let (currency_code, minor) = amount()?;
            PromoDiscount::FixedPrice {
                currency_code,
                minor,
            }
        }
        pb::PromoDiscountKind::Unspecified => {
            return Err(FieldError::new("promo_code.kind", "is required"));
        }
    };
    let price_tier_ids = code
        .price_tier_ids
        .iter()
        .map(|id| {
            Uuid::parse_str(id)
                .map_err(|_| FieldError::new("promo_code.price_tier_ids", "must be UUIDs"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PromoCode {
        id: Uuid::now_v7(),
        code: code.code.trim().to_owned(),
        event_id: optional_uuid("promo_code.event_id", &code.event_id)?,
        venue_id: optional_uuid("promo_code.venue_id", &code.venue_id)?,
        price_tier_ids,
        discount,
        valid_from: optional_time("promo_code.valid_from", code.valid_from)?,
        valid_until: optional_time("promo_code.valid_until", code.valid_until)?,
        max_redemptions: code.max_redemptions,
        max_per_user: code.max_redemptions_per_user,
        min_tickets: code.min_tickets,
    })
}

fn promo_code_to_pb(usage: &PromoCodeUsage) -> pb::PromoCode {
    let code = &usage.code;
    let (kind, percent_off, amount) = match &code.discount {
        PromoDiscount::PercentOff(percent) => {
            (pb::PromoDiscountKind::PercentOff, u32::from(*percent), None)
        }
        PromoDiscount::AmountOff {
            currency_code,
            minor,
        } => (
            pb::PromoDiscountKind::AmountOff,
            0,
            Some(pb::Money {
                currency_code: currency_code.clone(),
                amount_minor: *minor,
            }),
        ),
        PromoDiscount::FixedPrice {
            currency_code,
            minor,
        } => (
            pb::PromoDiscountKind::FixedPrice,
            0,
            Some(pb::Money {
                currency_code: currency_code.clone(),
                amount_minor: *minor,
            }),
        ),
    };
    pb::PromoCode {
        name: promo::promo_code_name(code.id),
        code: code.code.clone(),
        event_id: code.event_id.map(|id| id.to_string()).unwrap_or_default(),
        venue_id: code.venue_id.map(|id| id.to_string()).unwrap_or_default(),
        price_tier_ids: code.price_tier_ids.iter().map(Uuid::to_string).collect(),
        kind: kind as i32,
        percent_off,
        amount,
        valid_from: code.valid_from.map(timestamp),
        valid_until: code.valid_until.map(timestamp),
        max_redemptions: code.max_redemptions,
        max_redemptions_per_user: code.max_per_user,
        min_tickets: code.min_tickets,
        times_redeemed: usage.redeemed,
        times_returned: usage.returned,
        create_time: Some(timestamp(usage.created_at)),
    }
}

fn loyalty_to_pb(summary: &LoyaltySummary) -> pb::Loyalty {
    let next = summary.tier.next();
    pb::Loyalty {
        points_balance: summary.balance,
        points_last_12_months: summary.points_last_12_months,
        tier: summary.tier.as_str().to_owned(),
        tier_discount_percent: summary.tier.discount_percent() as u32,
        next_tier: next
            .map(|tier| tier.as_str().to_owned())
            .unwrap_or_default(),
        points_to_next_tier: next.map_or(0, |tier| {
            (tier.threshold() - summary.points_last_12_months).max(0)
        }),
        history: summary
            .history
            .iter()
            .map(|entry| pb::LoyaltyEntry {
                kind: entry.kind.clone(),
                points: entry.points,
                booking: entry
                    .booking_id
                    .map(domain::booking_name)
                    .unwrap_or_default(),
                create_time: Some(timestamp(entry.created_at)),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl pb::checkout_service_server::CheckoutService for CheckoutGrpc {
    #[instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn apply_loyalty_points(
        &self,
        request: Request<pb::ApplyLoyaltyPointsRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let booking_id = domain::parse_booking_name("name", &request.name).map_err(Status::from)?;
        let points =
            domain::loyalty::parse_points("points", request.points).map_err(Status::from)?;
        let booking = self
            .checkout
            .apply_loyalty_points(&caller, booking_id, points)
            .await?;
        Ok(Response::new(booking_to_pb(&booking, &self.signer)))
    }

    #[instrument(skip_all)]
    async fn get_loyalty(
        &self,
        request: Request<pb::GetLoyaltyRequest>,
    ) -> Result<Response<pb::Loyalty>, Status> {
        let caller = Caller::of(&request);
        let summary = self.checkout.loyalty(&caller).await?;
        Ok(Response::new(loyalty_to_pb(&summary)))
    }

    #[instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn apply_promo_code(
        &self,
        request: Request<pb::ApplyPromoCodeRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let booking_id = domain::parse_booking_name("name", &request.name).map_err(Status::from)?;
        if request.code.is_empty() || request.code.len() > 255 {
            return Err(Status::from(FieldError::new(
                "code",
                "must be a promo code",
            )));
        }
        let booking = self
            .checkout
            .apply_promo_code(&caller, booking_id, &request.code)
            .await?;
        Ok(Response::new(booking_to_pb(&booking, &self.signer)))
    }

    #[instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn remove_promo_code(
        &self,
        request: Request<pb::RemovePromoCodeRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        let caller = Caller::of(&request);
        let booking_id =
            domain::parse_booking_name("name", &request.get_ref().name).map_err(Status::from)?;
        let booking = self.checkout.remove_promo_code(&caller, booking_id).await?;
        Ok(Response::new(booking_to_pb(&booking, &self.signer)))
    }

    #[instrument(skip_all)]
    async fn create_promo_code(
        &self,
        request: Request<pb::CreatePromoCodeRequest>,
    ) -> Result<Response<pb::PromoCode>, Status> {
        let caller = Caller::of(&request);
        let code = request
            .into_inner()
            .promo_code
            .ok_or_else(|| Status::from(FieldError::new("promo_code", "is required")))?;
        let code = promo_code_from_pb(code).map_err(Status::from)?;
        let created = self.checkout.create_promo_code(&caller, code).await?;
        Ok(Response::new(promo_code_to_pb(&created)))
    }

    #[instrument(skip_all)]
    async fn list_promo_codes(
        &self,
        request: Request<pb::ListPromoCodesRequest>,
    ) -> Result<Response<pb::ListPromoCodesResponse>, Status> {
        let caller = Caller::of(&request);
        let event_id =
            optional_uuid("event_id", &request.get_ref().event_id).map_err(Status::from)?;
        let codes = self.checkout.promo_codes(&caller, event_id).await?;
        Ok(Response::new(pb::ListPromoCodesResponse {
            promo_codes: codes.iter().map(promo_code_to_pb).collect(),
        }))
    }

    #[instrument(skip_all)]
    async fn list_tickets(
        &self,
        request: Request<pb::ListTicketsRequest>,
    ) -> Result<Response<pb::ListTicketsResponse>, Status> {
        let caller = Caller::of(&request);
        let tickets = self.checkout.held_tickets(&caller).await?;
        Ok(Response::new(pb::ListTicketsResponse {
            tickets: tickets
                .iter()
                .map(|held| held_ticket_to_pb(held, &self.signer))
                .collect(),
        }))
    }

    #[instrument(skip_all, fields(ticket = %request.get_ref().ticket))]
    async fn create_ticket_transfer(
        &self,
        request: Request<pb::CreateTicketTransferRequest>,
    ) -> Result<Response<pb::TicketTransfer>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let ticket =
            door_domain::parse_ticket_name("ticket", &request.ticket).map_err(Status::from)?;
        let email = door_domain::parse_email("recipient_email", &request.recipient_email)
            .map_err(Status::from)?;
        let transfer = self
            .checkout
            .create_transfer(&caller, ticket, email)
            .await?;
        Ok(Response::new(transfer_to_pb(&transfer)))
    }

    #[instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn accept_ticket_transfer(
        &self,
        request: Request<pb::AcceptTicketTransferRequest>,
    ) -> Result<Response<pb::TicketTransfer>, Status> {
        let caller = Caller::of(&request);
        let id = door_domain::parse_transfer_name("name", &request.get_ref().name)
            .map_err(Status::from)?;
        let transfer = self.checkout.accept_transfer(&caller, id).await?;
        Ok(Response::new(transfer_to_pb(&transfer)))
    }

    #[instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn cancel_ticket_transfer(
        &self,
        request: Request<pb::CancelTicketTransferRequest>,
    ) -> Result<Response<pb::TicketTransfer>, Status> {
        let caller = Caller::of(&request);
        let id = door_domain::parse_transfer_name("name", &request.get_ref().name)
            .map_err(Status::from)?;
        let transfer = self.checkout.cancel_transfer(&caller, id).await?;
        Ok(Response::new(transfer_to_pb(&transfer)))
    }

    #[instrument(skip_all)]
    async fn list_ticket_transfers(
        &self,
        request: Request<pb::ListTicketTransfersRequest>,
    ) -> Result<Response<pb::ListTicketTransfersResponse>, Status> {
        let caller = Caller::of(&request);
        let transfers = self.checkout.transfers(&caller).await?;
        Ok(Response::new(pb::ListTicketTransfersResponse {
            transfers: transfers.iter().map(transfer_to_pb).collect(),
        }))
    }

    #[instrument(skip_all, fields(hold = %request.get_ref().hold))]
    async fn create_booking(
        &self,
        request: Request<pb::CreateBookingRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let (event_id, hold_id) =
            domain::parse_hold_name("hold", &request.hold).map_err(Status::from)?;
        let key = domain::parse_idempotency_key("idempotency_key", &request.idempotency_key, false)
            .map_err(Status::from)?;
        let booking = self
            .checkout
            .create_booking(&caller, event_id, hold_id, key)
            .await?;
        Ok(Response::new(booking_to_pb(&booking, &self.signer)))
    }

    #[instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn confirm_booking(
        &self,
        request: Request<pb::ConfirmBookingRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let booking_id = domain::parse_booking_name("name", &request.name).map_err(Status::from)?;
        let token = payment_method(request.payment_method).map_err(Status::from)?;
        let key = domain::parse_idempotency_key("idempotency_key", &request.idempotency_key, true)
            .map_err(Status::from)?
            .unwrap_or_default();
        let booking = match self
            .checkout
            .confirm_booking(&caller, booking_id, token, key)
            .await
        {
            Ok(booking) => booking,
            // 3-D Secure or PayPal approval: the pending booking, with
            // where the buyer goes.
            Err(crate::error::CheckoutError::PaymentActionRequired(url)) => {
                let booking = self.checkout.get_booking(&caller, booking_id).await?;
                let mut answer = booking_to_pb(&booking, &self.signer);
                answer.payment_action = Some(pb::PaymentAction {
                    r#type: "redirect_to_url".to_owned(),
                    url,
                });
                return Ok(Response::new(answer));
            }
            Err(error) => return Err(error.into()),
        };
        Ok(Response::new(booking_to_pb(&booking, &self.signer)))
    }

    #[instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_booking(
        &self,
        request: Request<pb::GetBookingRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        let caller = Caller::of(&request);
        let booking_id =
            domain::parse_booking_name("name", &request.get_ref().name).map_err(Status::from)?;
        let booking = self.checkout.get_booking(&caller, booking_id).await?;
        Ok(Response::new(booking_to_pb(&booking, &self.signer)))
    }

    #[instrument(skip_all)]
    async fn list_bookings(
        &self,
        request: Request<pb::ListBookingsRequest>,
    ) -> Result<Response<pb::ListBookingsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if (1..=MAX_PAGE_SIZE).contains(&size) => size,
            _ => {
                return Err(Status::from(FieldError::new(
                    "page_size",
                    "must be from 0 to 100",
                )));
            }
        };
        let after = decode_page_token(&request.page_token).map_err(Status::from)?;
        let (bookings, more) = self
            .checkout
            .list_bookings(&caller, after, page_size as i64)
            .await?;
        let next_page_token = match (more, bookings.last()) {
            (true, Some(last)) => encode_page_token(last),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListBookingsResponse {
            bookings: bookings
                .iter()
                .map(|booking| booking_to_pb(booking, &self.signer))
                .collect(),
            next_page_token,
        }))
    }

    #[instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn cancel_booking(
        &self,
        request: Request<pb::CancelBookingRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let booking_id = domain::parse_booking_name("name", &request.name).map_err(Status::from)?;
        domain::parse_idempotency_key("idempotency_key", &request.idempotency_key, false)
            .map_err(Status::from)?;
        let booking = self.checkout.cancel_booking(&caller, booking_id).await?;
        Ok(Response::new(booking_to_pb(&booking, &self.signer)))
    }
}

/// What a ConfirmBooking pays with, as checkout records it: a card's
/// token, or [`PAYPAL_METHOD`] (which no card token may spell).
fn payment_method(method: Option<pb::PaymentMethod>) -> Result<String, FieldError> {
    let method = method.unwrap_or_default();
    match pb::PaymentMethodType::try_from(method.r#type) {
        Ok(pb::PaymentMethodType::Paypal) => Ok(PAYPAL_METHOD.to_owned()),
        Ok(pb::PaymentMethodType::Unspecified | pb::PaymentMethodType::Card) => {
            let token = method.token;
            if token.is_empty() || token.len() > 255 || token == PAYPAL_METHOD {
                return Err(FieldError::new(
                    "payment_method.token",
                    "must be a payment method token",
                ));
            }
            Ok(token)
        }
        Err(_) => Err(FieldError::new(
            "payment_method.type",
            "must be PAYMENT_METHOD_TYPE_CARD or PAYMENT_METHOD_TYPE_PAYPAL",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_junk() {
        let booking_id = Uuid::new_v4();
        let time = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let token = URL_SAFE_NO_PAD.encode(format!("{}:{booking_id}", time.timestamp_micros()));
        assert_eq!(decode_page_token(&token), Ok(Some((time, booking_id))));
        assert_eq!(decode_page_token(""), Ok(None));
        assert!(decode_page_token("!!").is_err());
        assert!(decode_page_token(&URL_SAFE_NO_PAD.encode("1:nope")).is_err());
    }
}
