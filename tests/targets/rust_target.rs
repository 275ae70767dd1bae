// The Rust counterpart of toolchain_target.cpp, built with Debian's rustc (Makefile: legacy
// symbol mangling and v0, each with and without frame pointers; crate name rust_target):
//
//   cruncher  (std::thread::Builder spawn) -> crunch_loop -> Crunch::step (never inlined, ~all
//             of the thread's cpu) -> mix_round (inlined) -> rotate_bits (inlined): the hot
//             method and its inline chain
//   stager    -> stage_loop -> drive::<Mixer<u32>> (a generic) -> <Mixer<T> as Stage>::run (a
//             trait impl), then a Vec<Item> dropped: <Vec<T> as Drop>::drop calls
//             <Item as Drop>::drop for every element
//   main      joins the cruncher
//
// Lines tests look for carry `// @line:NAME` markers. Readiness as the C++ targets
// (target_support.h): once both threads run, "ready pid=P cruncher=TID stager=TID" is written to
// the fd named by PMPROF_READY_FD (stdout without it). It runs until killed.
use std::arch::asm;
use std::fs::File;
use std::io::Write;
use std::os::unix::io::FromRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;

static SINK: AtomicU64 = AtomicU64::new(0);

/// An optimization barrier (std::hint::black_box is newer than Debian's rustc 1.63).
#[inline(always)]
fn opaque(mut x: u64) -> u64 {
    unsafe { asm!("/* {0} */", inout(reg) x, options(nomem, nostack)) };
    x
}

/// This thread's kernel thread id, from /proc/thread-self ("PID/task/TID"): no libc crate.
fn current_tid() -> u64 {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    let text = link.to_string_lossy().into_owned();
    text.rsplit('/').next().unwrap().parse().unwrap()
}

#[inline(always)]
fn rotate_bits(x: u64, k: u32) -> u64 {
    opaque(x).rotate_left(k) // @line:rotate
}

#[inline(always)]
fn mix_round(x: u64, salt: u64) -> u64 {
    let y = rotate_bits((x ^ salt).wrapping_mul(0x9e3779b97f4a7c15), 29); // @line:mix_calls_rotate
    y.wrapping_add(y >> 17)
}

pub struct Crunch {
    state: u64,
}

impl Crunch {
    /// Nearly all of the cruncher's time: the hot method.
    #[inline(never)]
    pub fn step(&mut self) -> u64 {
        for i in 0..200_000u64 {
            self.state = mix_round(self.state, i); // @line:step_calls_mix
        }
        self.state
    }
}

#[inline(never)]
fn crunch_loop() {
    let mut c = Crunch { state: 1 };
    loop {
        let r = c.step(); // @line:loop_calls_step
        SINK.fetch_add(r, Ordering::Relaxed);
    }
}

pub trait Stage {
    fn run(&mut self, n: u64) -> u64;
}

pub struct Mixer<T> {
    weights: Vec<T>,
}

impl<T: Copy + Into<u64>> Stage for Mixer<T> {
    #[inline(never)]
    fn run(&mut self, n: u64) -> u64 {
        let mut acc = 5u64;
        for i in 0..n {
            let w: u64 = self.weights[(i as usize) % self.weights.len()].into();
            acc = opaque(acc.wrapping_mul(6364136223846793005).wrapping_add(w)); // @line:stage_run
        }
        acc
    }
}

/// A generic function: its one instantiation is drive::<Mixer<u32>>.
#[inline(never)]
fn drive<S: Stage>(stage: &mut S, n: u64) -> u64 {
    let r = stage.run(n); // @line:drive_calls_run
    opaque(r)
}

pub struct Item {
    value: u64,
}

impl Drop for Item {
    #[inline(never)]
    fn drop(&mut self) {
        let mut x = self.value;
        for _ in 0..200 {
            x = opaque(x.wrapping_mul(0xff51afd7ed558ccd)); // @line:item_drop
        }
        SINK.fetch_add(x, Ordering::Relaxed);
    }
}

#[inline(never)]
fn stage_loop() {
    let mut mixer = Mixer::<u32> { weights: vec![3, 1, 4, 1, 5, 9, 2, 6] };
    loop {
        let r = drive(&mut mixer, 100_000); // @line:loop_calls_drive
        let items: Vec<Item> = (0..500).map(|i| Item { value: r ^ i }).collect();
        drop(items); // @line:loop_drops_items
    }
}

fn report(line: &str) {
    let text = format!("{}\n", line);
    match std::env::var("PMPROF_READY_FD").ok().and_then(|s| s.parse::<i32>().ok()) {
        Some(fd) => {
            // The fd stays open for later lines: the File is forgotten, not dropped.
            let mut f = unsafe { File::from_raw_fd(fd) };
            let _ = f.write_all(text.as_bytes());
            std::mem::forget(f);
        }
        None => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            let _ = std::io::stdout().flush();
        }
    }
}

fn main() {
    let (tx, rx) = mpsc::channel::<(&'static str, u64)>();
    let tx2 = tx.clone();
    let cruncher = thread::Builder::new()
        .name("cruncher".into())
        .spawn(move || {
            tx.send(("cruncher", current_tid())).unwrap();
            crunch_loop(); // @line:thread_calls_loop
        })
        .unwrap();
    let _stager = thread::Builder::new()
        .name("stager".into())
        .spawn(move || {
            tx2.send(("stager", current_tid())).unwrap();
            stage_loop(); // @line:thread_calls_stage
        })
        .unwrap();
    let mut fields = format!("ready pid={}", std::process::id());
    for _ in 0..2 {
        let (name, tid) = rx.recv().unwrap();
        fields += &format!(" {}={}", name, tid);
    }
    report(&fields);
    cruncher.join().unwrap(); // @line:main_join
}
