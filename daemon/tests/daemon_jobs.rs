//! Jobs through the real daemon: several clients at once, live-preview coalescing, cancel,
//! disconnects, seeds and request checks. Runs the real `livefill serve` binary with the real
//! engine on the tiny fixture model, CPU only.

#![cfg(unix)]

mod daemon_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use daemon_support::*;
use livefill_protocol::{ClientMessage, DaemonMessage, ErrorCode, Mask, Mode, Priority};

#[test]
fn concurrent_clients_all_get_all_their_results() {
    let daemon = Daemon::start("tiny-sd");
    let socket = daemon.socket.clone();
    let clients: Vec<_> = (0..4u64)
        .map(|c| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(&socket);
                client.hello(&format!("client-{c}"));
                // Same request ids on every connection: ids are per connection.
                let requests = [
                    txt2img(1, 64, 2),
                    inpaint(2, 80 + 8 * c as u32, 72),
                    txt2img(3, 96, 1),
                ];
                for r in &requests {
                    client.send(&ClientMessage::Generate(r.clone()));
                }
                let mut results = Vec::new();
                let mut accepted = 0;
                while results.len() < requests.len() {
                    match client.recv() {
                        DaemonMessage::Accepted { .. } => accepted += 1,
                        DaemonMessage::Result(r) => results.push(r),
                        DaemonMessage::Progress { .. } => {}
                        other => panic!("client {c}: unexpected {other:?}"),
                    }
                }
                assert_eq!(accepted, 3);
                let mut ids: Vec<u64> = results.iter().map(|r| r.request_id).collect();
                ids.sort();
                assert_eq!(ids, vec![1, 2, 3]);
                for r in &results {
                    assert!(r.image.is_well_formed());
                    let expected_seed = if r.request_id == 2 {
                        7
                    } else {
                        1000 + r.request_id
                    };
                    assert_eq!(r.seed, expected_seed);
                }
                results
            })
        })
        .collect();
    for handle in clients {
        handle.join().expect("client thread");
    }
    let status = daemon.status();
    assert_eq!(status.jobs_completed, 12);
    assert_eq!(status.queued_jobs, 0);
}

#[test]
fn final_jobs_are_accepted_in_order_with_positions() {
    let daemon = Daemon::start("tiny-sd");
    let (mut client, _) = daemon.client("fifo");
    // A long first job so the others queue behind it.
    client.send(&ClientMessage::Generate(txt2img(1, 256, 50)));
    for id in 2..=4 {
        client.send(&ClientMessage::Generate(txt2img(id, 64, 1)));
    }
    let mut positions = Vec::new();
    let mut results = Vec::new();
    while results.len() < 4 {
        match client.recv() {
            DaemonMessage::Accepted {
                request_id,
                queue_position,
            } => positions.push((request_id, queue_position)),
            DaemonMessage::Result(r) => results.push(r.request_id),
            DaemonMessage::Progress { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(positions[0].0, 1);
    assert_eq!(
        positions[1..].iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    // Each request queues behind the earlier ones (positions count the jobs still waiting, so
    // they never decrease while the long first job holds the device).
    assert!(
        positions.windows(2).all(|w| w[1].1 >= w[0].1),
        "{positions:?}"
    );
    assert!(positions[3].1 >= 2, "{positions:?}");
    assert_eq!(results, vec![1, 2, 3, 4], "FIFO");
}

#[test]
fn random_seed_is_reported_and_progress_streams() {
    let daemon = Daemon::start("tiny-sd");
    let (mut client, _) = daemon.client("seed");
    let mut request = txt2img(5, 64, 3);
    request.seed = None;
    request.stream_previews = true;
    client.send(&ClientMessage::Generate(request.clone()));
    let mut others = Vec::new();
    let msgs = client.until_final(5, &mut others);
    let steps: Vec<(u32, u32)> = msgs
        .iter()
        .filter_map(|m| match m {
            DaemonMessage::Progress {
                step, total_steps, ..
            } => Some((*step, *total_steps)),
            _ => None,
        })
        .collect();
    assert_eq!(steps, vec![(1, 3), (2, 3), (3, 3)]);
    let DaemonMessage::Result(first) = msgs.last().unwrap() else {
        panic!("{msgs:?}")
    };
    // Same request with the reported seed: the same pixels.
    request.request_id = 6;
    request.seed = Some(first.seed);
    request.stream_previews = false;
    client.send(&ClientMessage::Generate(request));
    let msgs = client.until_final(6, &mut others);
    assert!(
        msgs.iter().all(|m| !matches!(
            m,
            DaemonMessage::Progress {
                preview: Some(_),
                ..
            }
        )),
        "no previews unless asked"
    );
    let DaemonMessage::Result(second) = msgs.last().unwrap() else {
        panic!("{msgs:?}")
    };
    assert_eq!(second.seed, first.seed);
    assert_eq!(second.image, first.image);
}

#[test]
fn live_storm_is_coalesced_and_fully_answered() {
    let daemon = Daemon::start("tiny-sd");
    let (mut client, _) = daemon.client("storm");
    const N: u64 = 20;
    let mut accepted = 0;
    let mut finals = HashMap::new();
    fn record(msg: DaemonMessage, accepted: &mut u32, finals: &mut HashMap<u64, DaemonMessage>) {
        match msg {
            DaemonMessage::Accepted { .. } => *accepted += 1,
            DaemonMessage::Progress { .. } => {}
            msg if is_final(&msg) => {
                let id = msg.request_id().unwrap();
                assert!(finals.insert(id, msg).is_none(), "one final per request");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for id in 1..=N {
        client.send(&ClientMessage::Generate(live(txt2img(id, 192, 8))));
        // Status is answered after the request is queued: never more than one pending.
        client.send(&ClientMessage::Status);
        loop {
            match client.recv() {
                DaemonMessage::Status(status) => {
                    assert!(status.queued_jobs <= 1, "after {id}: {status:?}");
                    break;
                }
                msg => record(msg, &mut accepted, &mut finals),
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while finals.len() < N as usize {
        assert!(Instant::now() < deadline, "not every request answered");
        let msg = client.recv();
        record(msg, &mut accepted, &mut finals);
    }
    assert_eq!(accepted, N as u32);
    for (id, msg) in &finals {
        match msg {
            DaemonMessage::Result(_) => {}
            DaemonMessage::Superseded {
                request_id,
                by_request_id,
            } => {
                assert_eq!(request_id, id);
                assert!(by_request_id > id);
            }
            other => panic!("request {id} ended with {other:?}"),
        }
    }
    assert!(
        matches!(finals[&N], DaemonMessage::Result(_)),
        "the last live request gets a result"
    );
    // How many were dropped depends on how fast the engine is against the client's sends;
    // that coalescing happens is shown without timing by the worker's gated unit test.
    let status = client.status();
    assert_eq!(status.queued_jobs, 0);
    assert_eq!(status.running_request, None);
}

#[test]
fn live_requests_of_different_clients_do_not_supersede_each_other() {
    let daemon = Daemon::start("tiny-sd");
    let (mut a, _) = daemon.client("a");
    let (mut b, _) = daemon.client("b");
    a.send(&ClientMessage::Generate(live(txt2img(1, 128, 4))));
    b.send(&ClientMessage::Generate(live(txt2img(1, 128, 4))));
    let mut others = Vec::new();
    for client in [&mut a, &mut b] {
        let msgs = client.until_final(1, &mut others);
        assert!(
            matches!(msgs.last(), Some(DaemonMessage::Result(_))),
            "{msgs:?}"
        );
    }
}

#[test]
fn cancel_queued_and_running_jobs() {
    let daemon = Daemon::start("tiny-sd");
    let (mut client, _) = daemon.client("cancel");
    client.send(&ClientMessage::Generate(txt2img(1, 512, 50)));
    client.send(&ClientMessage::Generate(txt2img(2, 64, 1)));
    // Wait until job 1 runs.
    let mut others = Vec::new();
    loop {
        let msg = client.recv();
        if let DaemonMessage::Progress { request_id: 1, .. } = msg {
            break;
        }
        others.push(msg);
    }
    client.send(&ClientMessage::Cancel { request_id: 2 });
    client.send(&ClientMessage::Cancel { request_id: 1 });
    // Unknown ids are ignored silently.
    client.send(&ClientMessage::Cancel { request_id: 999 });
    let mut last_step_of_job_1 = 1;
    for id in [2, 1] {
        let msgs = client.until_final(id, &mut others);
        assert_eq!(
            error_code(msgs.last().unwrap()),
            Some(ErrorCode::Cancelled),
            "{msgs:?}"
        );
        for msg in &msgs {
            if let DaemonMessage::Progress {
                request_id: 1,
                step,
                ..
            } = msg
            {
                last_step_of_job_1 = last_step_of_job_1.max(*step);
            }
        }
    }
    assert!(
        last_step_of_job_1 < 50,
        "stopped at a step boundary, not at the end (last step {last_step_of_job_1} of 50)"
    );
    let status = client.status();
    assert_eq!(status.running_request, None);
    assert_eq!(status.jobs_completed, 0);
    // The connection is still fine.
    client.send(&ClientMessage::Generate(txt2img(3, 64, 1)));
    let msgs = client.until_final(3, &mut others);
    assert!(matches!(msgs.last(), Some(DaemonMessage::Result(_))));
}

#[test]
fn disconnect_mid_job_cancels_it_and_the_daemon_keeps_serving() {
    let mut daemon = Daemon::start("tiny-sd");
    let (mut leaver, _) = daemon.client("leaver");
    leaver.send(&ClientMessage::Generate(txt2img(1, 512, 50)));
    leaver.send(&ClientMessage::Generate(txt2img(2, 512, 50)));
    loop {
        if let DaemonMessage::Progress { request_id: 1, .. } = leaver.recv() {
            break;
        }
    }
    let (mut observer, _) = daemon.client("observer");
    let status = observer.status();
    assert_eq!(status.running_request, Some(1));
    assert_eq!(status.queued_jobs, 1);
    drop(leaver);
    let stopped = eventually(Duration::from_secs(5), || {
        let s = observer.status();
        s.running_request.is_none() && s.queued_jobs == 0
    });
    assert!(stopped, "{:?}", observer.status());
    assert_eq!(observer.status().jobs_completed, 0);
    daemon.assert_alive();
    observer.send(&ClientMessage::Generate(txt2img(1, 64, 1)));
    let mut others = Vec::new();
    let msgs = observer.until_final(1, &mut others);
    assert!(matches!(msgs.last(), Some(DaemonMessage::Result(_))));
}

#[test]
fn bad_requests_get_errors_and_the_connection_stays_usable() {
    let daemon = Daemon::start_with("tiny-sd", &["--max-image-side", "1024"]);
    let (mut client, hello) = daemon.client("bad-requests");
    assert_eq!(hello.capabilities.max_image_side, 1024);
    let mut others = Vec::new();

    let mut zero_steps = txt2img(1, 64, 1);
    zero_steps.steps = 0;
    let mut too_large = inpaint(2, 64, 64);
    too_large.image.as_mut().unwrap().width = 2000;
    too_large.image.as_mut().unwrap().height = 1;
    too_large.image.as_mut().unwrap().pixels = vec![0; 2000 * 4];
    let mut mask_mismatch = inpaint(3, 64, 64);
    mask_mismatch.mask = Some(Mask::new(32, 32, vec![255; 32 * 32]));
    let mut no_image = inpaint(4, 64, 64);
    no_image.image = None;
    let mut long_prompt = txt2img(5, 64, 1);
    long_prompt.prompt = "x".repeat(100_000);
    let mut bad_strength = inpaint(6, 64, 64);
    bad_strength.strength = f32::NAN;
    let mut wrong_len = inpaint(7, 64, 64);
    wrong_len.image.as_mut().unwrap().pixels.truncate(100);
    let cases = [
        (zero_steps, ErrorCode::InvalidRequest),
        (too_large, ErrorCode::ImageTooLarge),
        (mask_mismatch, ErrorCode::MaskSizeMismatch),
        (no_image, ErrorCode::InvalidRequest),
        (long_prompt, ErrorCode::InvalidRequest),
        (bad_strength, ErrorCode::InvalidRequest),
        (wrong_len, ErrorCode::InvalidRequest),
    ];
    for (request, code) in cases {
        let id = request.request_id;
        client.send(&ClientMessage::Generate(request));
        let msgs = client.until_final(id, &mut others);
        assert_eq!(msgs.len(), 1, "refused before Accepted: {msgs:?}");
        let DaemonMessage::Error(e) = &msgs[0] else {
            panic!("{msgs:?}")
        };
        assert_eq!((e.request_id, e.code), (Some(id), code), "{e}");
    }

    // A duplicate id of an unfinished request on the same connection is refused.
    client.send(&ClientMessage::Generate(txt2img(10, 256, 50)));
    client.send(&ClientMessage::Generate(txt2img(10, 64, 1)));
    let mut tens = Vec::new();
    while tens.iter().filter(|m| is_final(m)).count() < 2 {
        let msg = client.recv();
        if msg.request_id() == Some(10) {
            if let DaemonMessage::Error(e) = &msg
                && e.code == ErrorCode::InvalidRequest
            {
                client.send(&ClientMessage::Cancel { request_id: 10 });
            }
            tens.push(msg);
        }
    }
    let codes: Vec<_> = tens.iter().filter_map(error_code).collect();
    assert_eq!(
        codes,
        vec![ErrorCode::InvalidRequest, ErrorCode::Cancelled],
        "{tens:?}"
    );

    // Still usable.
    let mut ok = txt2img(11, 64, 1);
    ok.mode = Mode::Txt2Img;
    ok.priority = Priority::Final;
    client.send(&ClientMessage::Generate(ok));
    let msgs = client.until_final(11, &mut others);
    assert!(matches!(msgs.last(), Some(DaemonMessage::Result(_))));
}
