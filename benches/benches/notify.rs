//! Notifications end to end: domain events committed to the producers'
//! outboxes → the `notify` consumer group records the mail (reading each
//! booking's ticket codes over gRPC) → the sender renders it (text, HTML,
//! a QR PNG per ticket) and a real SMTP server (`integration/smtp`, Node.js)
//! accepts it, appending it to one file. Target: ≥ 1,000 notifications/s.
//!
//! `cargo bench -p boxoffice-benches --bench notify` (PostgreSQL on
//! 127.0.0.1, Node.js with `npm ci` done in `integration/smtp`). Knobs:
//! `BOXOFFICE_BENCH_MESSAGES` (confirmations, default 5000),
//! `BOXOFFICE_BENCH_TICKETS` (tickets a booking, default 2),
//! `BOXOFFICE_NOTIFY_CONCURRENCY` (messages sent at once, default 16).
//!
//! Checkout is a stub serving `GetBooking` with signed-looking codes, so
//! only notification work is measured. The events are written before the
//! group starts; the clock runs from its start until the SMTP server has
//! accepted the last message (the sender's count) and PostgreSQL has it
//! recorded as sent.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use boxoffice_contracts::checkout::v1 as pb;
use boxoffice_contracts::checkout::v1::checkout_service_server::{
    CheckoutService, CheckoutServiceServer,
};
use boxoffice_contracts::events::v1 as events_pb;
use boxoffice_events::{NewEvent, Outbox, Payload};
use boxoffice_runtime::config::Secret;
use boxoffice_runtime::server::GrpcServer;
use boxoffice_runtime::{Config, Shutdown};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tonic::{Request, Response, Status};
use uuid::Uuid;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Checkout as notifications see it: every booking exists, confirmed,
/// with `tickets` codes of the real codes' length.
struct StubCheckout {
    tickets: u32,
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not in the notification bench"))
}

#[tonic::async_trait]
impl CheckoutService for StubCheckout {
    async fn get_booking(
        &self,
        request: Request<pb::GetBookingRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        let name = request.into_inner().name;
        let booking = name.trim_start_matches("bookings/").replace('-', "");
        let tickets = (0..self.tickets)
            .map(|seat| pb::Ticket {
                seat_index: seat,
                code: format!(
                    "bt2.{}.{booking}.{seat}.{}.{}",
                    "e".repeat(32),
                    "n".repeat(32),
                    "s".repeat(86)
                ),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(pb::Booking {
            name,
            state: pb::BookingState::Confirmed as i32,
            tickets,
            total: Some(pb::Money {
                currency_code: "GBP".into(),
                amount_minor: 5_300,
            }),
            ..Default::default()
        }))
    }
    async fn create_booking(
        &self,
        _: Request<pb::CreateBookingRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        unimplemented()
    }
    async fn confirm_booking(
        &self,
        _: Request<pb::ConfirmBookingRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        unimplemented()
    }
    async fn list_bookings(
        &self,
        _: Request<pb::ListBookingsRequest>,
    ) -> Result<Response<pb::ListBookingsResponse>, Status> {
        unimplemented()
    }
    async fn cancel_booking(
        &self,
        _: Request<pb::CancelBookingRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        unimplemented()
    }
    async fn list_tickets(
        &self,
        _: Request<pb::ListTicketsRequest>,
    ) -> Result<Response<pb::ListTicketsResponse>, Status> {
        unimplemented()
    }
    async fn create_ticket_transfer(
        &self,
        _: Request<pb::CreateTicketTransferRequest>,
    ) -> Result<Response<pb::TicketTransfer>, Status> {
        unimplemented()
    }
    async fn accept_ticket_transfer(
        &self,
        _: Request<pb::AcceptTicketTransferRequest>,
    ) -> Result<Response<pb::TicketTransfer>, Status> {
        unimplemented()
    }
    async fn cancel_ticket_transfer(
        &self,
        _: Request<pb::CancelTicketTransferRequest>,
    ) -> Result<Response<pb::TicketTransfer>, Status> {
        unimplemented()
    }
    async fn list_ticket_transfers(
        &self,
        _: Request<pb::ListTicketTransfersRequest>,
    ) -> Result<Response<pb::ListTicketTransfersResponse>, Status> {
        unimplemented()
    }
    async fn apply_promo_code(
        &self,
        _: Request<pb::ApplyPromoCodeRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        unimplemented()
    }
    async fn remove_promo_code(
        &self,
        _: Request<pb::RemovePromoCodeRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        unimplemented()
    }
    async fn create_promo_code(
        &self,
        _: Request<pb::CreatePromoCodeRequest>,
    ) -> Result<Response<pb::PromoCode>, Status> {
        unimplemented()
    }
    async fn list_promo_codes(
        &self,
        _: Request<pb::ListPromoCodesRequest>,
    ) -> Result<Response<pb::ListPromoCodesResponse>, Status> {
        unimplemented()
    }
    async fn apply_loyalty_points(
        &self,
        _: Request<pb::ApplyLoyaltyPointsRequest>,
    ) -> Result<Response<pb::Booking>, Status> {
        unimplemented()
    }
    async fn get_loyalty(
        &self,
        _: Request<pb::GetLoyaltyRequest>,
    ) -> Result<Response<pb::Loyalty>, Status> {
        unimplemented()
    }
}

/// The test SMTP server, storing into a temporary folder.
async fn start_smtp(dir: &std::path::Path) -> anyhow::Result<(tokio::process::Child, SocketAddr)> {
    let code = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../integration/smtp");
    anyhow::ensure!(
        code.join("node_modules/smtp-server").exists(),
        "run `npm ci` in {} first",
        code.display()
    );
    let mut process = tokio::process::Command::new("node")
        .arg("server.js")
        .current_dir(&code)
        .env("SMTP_LISTEN", "127.0.0.1:0")
        .env("MAIL_DIR", dir)
        .env("SMTP_STORE", "log")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting node")?;
    let mut lines = BufReader::new(process.stdout.take().context("stdout")?).lines();
    let line = lines
        .next_line()
        .await?
        .context("the SMTP server said nothing")?;
    let addr = line
        .strip_prefix("listening on ")
        .context("an unexpected first line")?
        .parse()?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((process, addr))
}

/// The messages the test server appended to its log (`SMTP_STORE=log`):
/// each one its length, a newline, its bytes and a newline.
fn received(log: &std::path::Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(log).context("reading the SMTP server's log")?;
    let mut messages = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let newline = rest
            .iter()
            .position(|byte| *byte == b'\n')
            .context("a length without its line")?;
        let length: usize = std::str::from_utf8(&rest[..newline])?.parse()?;
        let start = newline + 1;
        anyhow::ensure!(rest.len() > start + length, "a message cut short");
        messages.push(rest[start..start + length].to_vec());
        rest = &rest[start + length + 1..];
    }
    Ok(messages)
}

/// Reads one SMTP reply (its last line when it has several).
async fn reply(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
    line: &mut String,
) -> anyhow::Result<()> {
    loop {
        line.clear();
        anyhow::ensure!(reader.read_line(line).await? > 0, "the SMTP server hung up");
        if line.as_bytes().get(3) != Some(&b'-') {
            anyhow::ensure!(
                line.starts_with('2') || line.starts_with('3'),
                "the SMTP server answered {line:?}"
            );
            return Ok(());
        }
    }
}

/// The SMTP server's own pace, the baseline: `count` copies of `message`
/// over `connections` connections from a bare client (TCP_NODELAY, a
/// message and its closing dot in one write), no rendering, no database.
async fn smtp_alone(
    addr: SocketAddr,
    message: &[u8],
    count: usize,
    connections: usize,
) -> anyhow::Result<Duration> {
    use tokio::io::AsyncWriteExt as _;
    let mut data = message.to_vec();
    if !data.ends_with(b"\r\n") {
        data.extend_from_slice(b"\r\n");
    }
    // Dot-stuffing, as SMTP asks of a line that starts with a dot.
    let text = String::from_utf8_lossy(&data).replace("\r\n.", "\r\n..");
    let mut data = text.into_bytes();
    data.extend_from_slice(b".\r\n");
    let data = std::sync::Arc::new(data);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for connection in 0..connections {
        let data = data.clone();
        let share = count / connections + usize::from(connection < count % connections);
        tasks.spawn(async move {
            let socket = tokio::net::TcpStream::connect(addr).await?;
            socket.set_nodelay(true)?;
            let (read, mut write) = socket.into_split();
            let mut reader = BufReader::new(read);
            let mut line = String::new();
            reply(&mut reader, &mut line).await?;
            write.write_all(b"EHLO bench\r\n").await?;
            reply(&mut reader, &mut line).await?;
            for _ in 0..share {
                write
                    .write_all(b"MAIL FROM:<tickets@example.com>\r\n")
                    .await?;
                reply(&mut reader, &mut line).await?;
                write.write_all(b"RCPT TO:<fan@example.com>\r\n").await?;
                reply(&mut reader, &mut line).await?;
                write.write_all(b"DATA\r\n").await?;
                reply(&mut reader, &mut line).await?;
                write.write_all(&data).await?;
                reply(&mut reader, &mut line).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

async fn append(
    pool: &deadpool_postgres::Pool,
    producer: &str,
    events: Vec<NewEvent>,
) -> anyhow::Result<()> {
    let outbox = Outbox::new(producer);
    let mut client = pool.get().await?;
    for chunk in events.chunks(1000) {
        let transaction = client.transaction().await?;
        outbox.append(&transaction, chunk.to_vec()).await?;
        transaction.commit().await?;
    }
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let messages = env_number("BOXOFFICE_BENCH_MESSAGES", 5_000);
    let tickets = env_number("BOXOFFICE_BENCH_TICKETS", 2) as u32;
    let server_url = boxoffice_benches::system::postgres_server_url();
    let database = format!("boxoffice_bench_notify_{}", std::process::id());
    let url = match server_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{database}"),
        None => anyhow::bail!("the PostgreSQL URL names no database"),
    };
    boxoffice_runtime::postgres::ensure_database(&Secret::new(url.clone())).await?;
    let config = Config::from_vars(
        [
            ("BOXOFFICE_DATABASE_URL".to_owned(), url.clone()),
            ("BOXOFFICE_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ]
        .into(),
    )?;
    let pool = boxoffice_runtime::postgres::pool(&config.database_url, 16)?;
    for producer in ["catalog", "checkout", "accounts"] {
        boxoffice_events::outbox::install(&pool, producer).await?;
    }
    let mail = tempfile::tempdir()?;
    let (_smtp, smtp_addr) = start_smtp(mail.path()).await?;

    // The events: a registration and a confirmed booking per message.
    let users: Vec<Uuid> = (0..messages).map(|_| Uuid::now_v7()).collect();
    let registered = users
        .iter()
        .map(|user| {
            NewEvent::new(
                "user",
                user,
                Payload::UserRegistered(events_pb::UserRegistered {
                    user_id: user.to_string(),
                    email: format!("fan-{}@example.com", user.simple()),
                    display_name: "Fan".into(),
                }),
            )
        })
        .collect();
    append(&pool, "accounts", registered).await?;
    let event_id = Uuid::now_v7().to_string();
    let confirmed = users
        .iter()
        .map(|user| {
            let booking = Uuid::now_v7();
            NewEvent::new(
                "booking",
                booking,
                Payload::BookingConfirmed(events_pb::BookingConfirmed {
                    booking_id: booking.to_string(),
                    user_id: user.to_string(),
                    event_id: event_id.clone(),
                    seat_indexes: (0..tickets).collect(),
                    ..Default::default()
                }),
            )
        })
        .collect();
    append(&pool, "checkout", confirmed).await?;

    let shutdown = Shutdown::new();
    let mut stub = GrpcServer::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    stub.add_service(CheckoutServiceServer::new(StubCheckout { tickets }));
    let checkout = stub.in_process();
    let notify_config = boxoffice_notify::NotifyConfig::from_vars(
        &std::env::vars()
            .chain([(
                "BOXOFFICE_SMTP_URL".to_owned(),
                format!("smtp://{smtp_addr}"),
            )])
            .collect(),
    )?;
    println!(
        "notify bench: {messages} confirmations of {tickets} tickets, {} sent at once",
        notify_config.concurrency
    );
    let concurrency = notify_config.concurrency;
    let started = Instant::now();
    let component = boxoffice_notify::NotifyComponent::start(
        &config,
        notify_config,
        pool.clone(),
        checkout,
        shutdown.clone(),
    )
    .await?;
    let mut recorded_at = None;
    loop {
        let sent = component.sender_stats.snapshot().sent as usize;
        if recorded_at.is_none()
            && component.consumer_stats.snapshot().handled as usize >= 2 * messages
        {
            recorded_at = Some(started.elapsed());
        }
        if sent >= messages {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {sent} of {messages} sent after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let stored = received(&mail.path().join("received.log"))?;
    let rate = messages as f64 / elapsed.as_secs_f64();
    shutdown.trigger();
    // The same server taking the same mail from a bare client, right after.
    let sample = stored.first().context("no mail stored")?.clone();
    let alone = smtp_alone(smtp_addr, &sample, messages, concurrency).await?;
    let alone_rate = messages as f64 / alone.as_secs_f64();
    println!();
    println!("| path | messages | seconds | per second |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| notifications end to end (recorded, rendered, sent) | {messages} | {:.2} | {rate:.0} |",
        elapsed.as_secs_f64()
    );
    println!(
        "| baseline: the SMTP server alone, a bare client, {} bytes a message | {messages} | {:.2} | {alone_rate:.0} |",
        sample.len(),
        alone.as_secs_f64()
    );
    println!();
    println!(
        "notify bench: target ≥ 1,000 notifications/s: {}; all recorded after {:.2} s; {} stored; end to end at {:.0}% of the server's own pace",
        if rate >= 1_000.0 { "met" } else { "NOT met" },
        recorded_at.unwrap_or(elapsed).as_secs_f64(),
        stored.len(),
        100.0 * rate / alone_rate,
    );
    let client = pool.get().await?;
    drop(component);
    drop(client);
    drop(pool);
    let (admin, connection) = tokio_postgres::connect(&server_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
