//! Group commit (for checkout's confirm path and inventory's sales). Every PostgreSQL statement costs a
//! round trip, a snapshot, a commit record and (for a durable commit) a WAL
//! flush, whatever it writes; on the confirm path that fixed cost, not the
//! rows, is what PostgreSQL spends its time on. So the reads (and the
//! records) of confirmations arriving together are made by one task in one
//! statement, and each caller is answered from that statement's result.
//!
//! While one batch runs the next one gathers, so under load a batch holds
//! whatever arrived during the previous statement and a lone request pays
//! nothing extra. A batch is all one transaction: a failed batch (say, a
//! deadlock with another instance's batch) is retried one item at a time,
//! so one caller's trouble never becomes everyone's.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot};

/// Most items written by one statement.
pub const MAX_BATCH: usize = 64;

type Reply<O> = oneshot::Sender<anyhow::Result<O>>;

pub struct Batcher<I, O> {
    queue: mpsc::Sender<(I, Reply<O>)>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the task that runs `write` over each batch; it must answer
    /// one result per item, in order. The task ends with the last handle.
    pub fn spawn<F, Fut>(write: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<anyhow::Result<O>>> + Send,
    {
        Self::spawn_lingering(MAX_BATCH, Duration::ZERO, write)
    }

    /// Like [`spawn`](Self::spawn), with at most `max` items a batch, and a
    /// batch's first item waiting up to `linger` for others to join it:
    /// fewer, fuller statements, for work whose callers are not in a hurry
    /// (nothing on a buyer's path lingers).
    pub fn spawn_lingering<F, Fut>(max: usize, linger: Duration, write: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<anyhow::Result<O>>> + Send,
    {
        let max = max.max(1);
        let (queue, mut incoming) = mpsc::channel::<(I, Reply<O>)>(4 * max);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max);
            while incoming.recv_many(&mut batch, max).await > 0 {
                if !linger.is_zero() {
                    let gathered = tokio::time::sleep(linger);
                    tokio::pin!(gathered);
                    while batch.len() < max {
                        let room = max - batch.len();
                        tokio::select! {
                            () = &mut gathered => break,
                            received = incoming.recv_many(&mut batch, room) => {
                                if received == 0 {
                                    break;
                                }
                            }
                        }
                    }
                }
                let (items, replies): (Vec<I>, Vec<Reply<O>>) = batch.drain(..).unzip();
                let wanted = items.len();
                let mut results = write(items).await.into_iter();
                for reply in replies {
                    let result = results.next().unwrap_or_else(|| {
                        Err(anyhow::anyhow!("a batch of {wanted} answered fewer items"))
                    });
                    // The caller may have gone (its request was cancelled).
                    let _ = reply.send(result);
                }
            }
        });
        Self { queue }
    }

    /// Queues `item` for the next batch and waits for its result.
    pub async fn submit(&self, item: I) -> anyhow::Result<O> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((item, reply))
            .await
            .map_err(|_| anyhow::anyhow!("the batch writer has stopped"))?;
        answer.await.context("the batch writer dropped a request")?
    }
}

/// Writes several `items` with `together` (one statement); a lone item, or
/// every item of a batch whose statement failed, with `one` each.
pub async fn together_or_one_at_a_time<'a, I, O, T, F>(
    items: &'a [I],
    kind: &str,
    together: T,
    one: impl Fn(&'a I) -> F,
) -> Vec<anyhow::Result<O>>
where
    T: Future<Output = anyhow::Result<Vec<anyhow::Result<O>>>>,
    F: Future<Output = anyhow::Result<O>>,
{
    if items.len() > 1 {
        match together.await {
            Ok(results) => return results,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    items = items.len(),
                    "a batch of {kind} failed; writing them one at a time"
                );
            }
        }
    }
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        results.push(one(item).await);
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn callers_arriving_together_share_a_batch_and_get_their_own_answers() {
        let batches = Arc::new(AtomicUsize::new(0));
        let counted = batches.clone();
        let batcher = Arc::new(Batcher::spawn(move |items: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                items
                    .into_iter()
                    .map(|item| {
                        if item % 7 == 0 {
                            Err(anyhow::anyhow!("no sevens"))
                        } else {
                            Ok(item * 2)
                        }
                    })
                    .collect()
            }
        }));
        let mut callers = tokio::task::JoinSet::new();
        for item in 1..=200u32 {
            let batcher = batcher.clone();
            callers.spawn(async move { (item, batcher.submit(item).await) });
        }
        while let Some(joined) = callers.join_next().await {
            let (item, result) = joined.unwrap();
            match result {
                Ok(doubled) => assert_eq!(doubled, item * 2),
                Err(error) => {
                    assert_eq!(item % 7, 0, "{error}");
                }
            }
        }
        let batches = batches.load(Ordering::SeqCst);
        assert!(
            (200usize.div_ceil(MAX_BATCH)..200).contains(&batches),
            "200 callers in {batches} batches"
        );
    }

    #[tokio::test]
    async fn a_lingering_batch_waits_for_stragglers_up_to_its_size() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Arc::new(Batcher::spawn_lingering(
            4,
            std::time::Duration::from_millis(200),
            move |items: Vec<u32>| {
                seen.lock().unwrap().push(items.len());
                async move { items.into_iter().map(Ok).collect() }
            },
        ));
        // Five callers 10 ms apart: the first four share a batch (it fills
        // before the linger ends), the fifth starts the next one.
        let mut callers = tokio::task::JoinSet::new();
        for item in 0..5u32 {
            let batcher = batcher.clone();
            callers.spawn(async move { (item, batcher.submit(item).await.unwrap()) });
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        while let Some(joined) = callers.join_next().await {
            let (item, answer) = joined.unwrap();
            assert_eq!(answer, item);
        }
        assert_eq!(*sizes.lock().unwrap(), vec![4, 1]);
    }
}
