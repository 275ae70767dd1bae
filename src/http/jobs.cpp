// `pmprof serve`: what each endpoint does. The tracing jobs run on the tracer thread; each one
// seizes the target, works, detaches, and only then encodes its answer (docs/design.md §1.2).
#include <fmt/format.h>

#include <memory>
#include <optional>
#include <string>

#include "http/tracer.h"
#include "pmprof/elf/image.h"
#include "pmprof/heap/heap.h"
#include "pmprof/os/procfs.h"
#include "pmprof/os/signals.h"
#include "pmprof/output/pprof.h"
#include "pmprof/output/threads.h"
#include "pmprof/ptrace/session.h"
#include "pmprof/sampler/perf.h"
#include "pmprof/sampler/sampler.h"
#include "pmprof/sites/sites.h"
#include "pmprof/support/fd.h"
#include "pmprof/support/log.h"
#include "pmprof/support/markup.h"
#include "pmprof/symbolize/symbolize.h"
#include "pmprof/threads/dump.h"

namespace pmprof::http {
namespace {

constexpr size_t kHeapTextTop = 30;  // rows of the ?debug=1 heap text

Reply pprof_reply(const Profile& profile, const std::string& filename) {
    auto gz = encode_pprof_gzip(profile);
    if (!gz.ok()) return Reply::text(500, "encoding the profile: " + gz.error().message);
    return Reply::binary(std::move(*gz), filename);
}

/// The answer when the work failed: 410 when the reason is that the target went away.
Reply failure_reply(const JobContext& ctx, const std::string& message) {
    if (!ctx.pin->alive()) return gone_reply(ctx.pin->pid());
    if (ctx.tracer->shutting_down()) return Reply::text(503, "pmprof serve is shutting down");
    return Reply::text(500, message);
}

}  // namespace

Reply gone_reply(pid_t pid) {
    return Reply::text(
        410, fmt::format("pid {} has exited; restart pmprof serve for a new process", pid));
}

Reply profile_job(const JobContext& ctx, const ProfileRequest& req) {
    const pid_t pid = ctx.pin->pid();
    if (!ctx.pin->alive()) return gone_reply(pid);
    SamplerOptions opt;
    opt.mode = req.mode;
    opt.rate_hz = req.rate_hz;
    opt.duration_ns = int64_t{req.seconds} * 1'000'000'000;
    opt.unwinder = ctx.unwinder;
    opt.max_pause_fraction = ctx.max_pause_fraction;
    opt.backend = ctx.backend;
    opt.command_line = fmt::format("pmprof serve {}: {}", pid, read_cmdline(pid));
    // cpu mode: attach's choice (perf when the kernel allows it; nothing is traced then).
    auto choice = choose_backend(pid, opt);
    if (!choice.ok()) return failure_reply(ctx, choice.error().message);
    std::optional<Result<SamplerResult>> sampled;
    if (choice->backend == CpuBackend::Perf) {
        sampled = run_perf_sampler(pid, opt, *choice);
        if (!ctx.pin->alive()) return gone_reply(pid);  // may describe a reused pid
    } else {
        // A thread dump asked for meanwhile is taken from this session between two ticks.
        opt.between_ticks = [&ctx](TraceSession& s) { ctx.tracer->run_shared(s); };
        // A tracer thread per profile: its exit detaches, without a stop, what is still traced
        // (a thread in D state with our interrupt pending), so nothing outlives the request and
        // the next one finds the target untraced.
        std::optional<Reply> early;
        run_on_tracer_thread([&] {
            auto session = TraceSession::seize(pid);
            if (!session.ok()) {
                early = failure_reply(ctx, session.error().message);
                return;
            }
            // Checked again while seized: a pid reused between the check above and the seize
            // is caught here, before a single sample of the wrong process is taken.
            if (!ctx.pin->alive()) {
                early = gone_reply(pid);
                return;
            }
            sampled = run_sampler(**session, opt);
            (*session)->detach_all();  // the target runs untraced before we encode anything
        });
        if (early) return *early;
        if (sampled->ok()) (*sampled)->stats.backend_reason = choice->reason;
    }
    auto& result = *sampled;
    if (!result.ok()) return failure_reply(ctx, result.error().message);
    if (result->end == SamplerEnd::StopRequested)  // cancelled: nobody reads this answer
        return Reply::text(503, ctx.tracer->shutting_down() ? "pmprof serve is shutting down"
                                                            : "cancelled");
    if (result->end == SamplerEnd::TargetExited && result->stats.samples == 0)
        return gone_reply(pid);
    log_info("profile: {} samples in {:.1f} s ({})", result->stats.samples,
             static_cast<double>(result->stats.wall_ns) / 1e9, result->end_message);
    return pprof_reply(result->profile, "profile");
}

Reply heap_job(const JobContext& ctx, int debug) {
    if (!ctx.pin->alive()) return gone_reply(ctx.pin->pid());
    auto snap = take_heap_snapshot(ctx.pin->pid(), HeapOptions{});
    if (!snap.ok()) return failure_reply(ctx, snap.error().message);
    if (!ctx.pin->alive()) return gone_reply(ctx.pin->pid());  // may describe a reused pid
    if (debug > 0) return Reply::text(200, format_heap_text(*snap, true, kHeapTextTop));
    return pprof_reply(heap_to_profile(*snap, true), "heap");
}

Reply sites_job(const JobContext& ctx, const ProfileRequest& req, const std::string& default_type) {
    const pid_t pid = ctx.pin->pid();
    if (!ctx.pin->alive()) return gone_reply(pid);
    if (auto c = check_alloc_sites(pid); !c.ok()) return Reply::text(501, c.error().message);
    AllocSitesOptions opt;
    opt.duration_ns = int64_t{req.seconds} * 1'000'000'000;
    opt.max_overhead = req.max_overhead_pct / 100;
    opt.unwinder = ctx.unwinder;
    opt.command_line = fmt::format("pmprof serve {}: {}", pid, read_cmdline(pid));
    auto r = record_alloc_sites(pid, opt);
    if (!r.ok()) return failure_reply(ctx, r.error().message);
    if (!ctx.pin->alive()) return gone_reply(pid);
    if (stop_requested())
        return Reply::text(503, ctx.tracer->shutting_down() ? "pmprof serve is shutting down"
                                                            : "cancelled");
    // An early end (the overhead budget) is worth a warning: the profile covers less time.
    if (r->stats.stopped_early)
        log_warn("{}", format_alloc_sites_summary(r->stats));
    else
        log_info("{}", format_alloc_sites_summary(r->stats));
    r->profile.default_sample_type = default_type;
    return pprof_reply(r->profile, default_type == "alloc_space" ? "allocs" : "heap");
}

Reply threads_job(const JobContext& ctx, int debug, const std::string& name,
                  TraceSession* running) {
    if (!ctx.pin->alive()) return gone_reply(ctx.pin->pid());
    DumpOptions opt;
    opt.unwinder = ctx.unwinder;
    opt.session = running;
    auto dump = take_thread_dump(ctx.pin->pid(), opt);
    if (!dump.ok()) return failure_reply(ctx, dump.error().message);
    if (!ctx.pin->alive()) return gone_reply(ctx.pin->pid());
    // Go: debug=1 groups identical stacks, debug>=2 prints every goroutine on its own.
    if (debug > 0) {
        ThreadTextOptions text;
        text.group = debug == 1;
        return Reply::text(200, format_thread_dump_text(*dump, text));
    }
    return pprof_reply(thread_dump_to_profile(*dump), name);
}

Reply symbol_job(const JobContext& ctx, const std::vector<uint64_t>& pcs) {
    const pid_t pid = ctx.pin->pid();
    // Go answers "num_symbols: 1" first; pprof only checks that it is not 0.
    std::string body = "num_symbols: 1\n";
    if (pcs.empty()) return Reply::text(200, body);
    if (!ctx.pin->alive()) return gone_reply(pid);
    auto maps = read_maps(pid);
    if (!maps.ok()) return failure_reply(ctx, maps.error().message);
    auto image = ProcessImage::open(pid, std::move(*maps));
    if (!image.ok()) return failure_reply(ctx, image.error().message);
    SymbolizeOptions so;
    so.source_lines = false;
    so.inlines = false;
    auto symbolizer = make_symbolizer(**image, so);
    for (const uint64_t pc : pcs) {
        const SymbolizedPc& s = symbolizer->symbolize(RawFrame{pc, true});
        // The last entry is the function the machine code belongs to
        // (include/pmprof/support/types.h).
        if (s.frames.empty() || s.frames.back().function.empty()) continue;
        body += fmt::format("{:#x} {}\n", pc, s.frames.back().function);
    }
    if (!ctx.pin->alive()) return gone_reply(pid);
    return Reply::text(200, body);
}

Reply cmdline_reply(const TargetPin& pin) {
    auto raw = read_file(fmt::format("/proc/{}/cmdline", pin.pid()));
    if (!pin.alive()) return gone_reply(pin.pid());
    if (!raw.ok()) return Reply::text(500, raw.error().message);
    std::string args = std::move(*raw);
    // Go writes os.Args joined by NUL bytes, with no trailing separator.
    if (!args.empty() && args.back() == '\0') args.pop_back();
    Reply r;
    r.body = std::move(args);
    return r;
}

Reply index_reply(const TargetPin& pin, int max_seconds) {
    if (!pin.alive()) return gone_reply(pin.pid());
    auto tasks = list_tasks(pin.pid());
    const std::string threads = tasks.ok() ? std::to_string(tasks->size()) : "?";
    const std::string who = markup_escape(read_cmdline(pin.pid()));
    Reply r;
    r.content_type = "text/html; charset=utf-8";
    // The layout of Go's net/http/pprof index, so people and tools find what they expect.
    r.body = fmt::format(
        R"(<html>
<head>
<title>/debug/pprof/</title>
<style>
.profile-name{{
	display:inline-block;
	width:6rem;
}}
</style>
</head>
<body>
/debug/pprof/ (pmprof serve, pid {pid}: {who})<br>
<br>
Set debug=1 as a query parameter to export in legacy text format<br>
<br>
Types of profiles available:
<table>
<thead><td>Count</td><td>Profile</td></thead>
<tr><td>{threads}</td><td><a href='goroutine?debug=1'>goroutine</a></td></tr>
<tr><td></td><td><a href='heap?debug=1'>heap</a></td></tr>
<tr><td>{threads}</td><td><a href='threads?debug=1'>threads</a></td></tr>
</table>
<a href="goroutine?debug=2">full thread stack dump</a>
<br>
<p>
Profile Descriptions:
<ul>
<li><div class=profile-name>cmdline: </div> The command line of the process, NUL-separated.</li>
<li><div class=profile-name>goroutine: </div> Stack traces of all threads (one thread dump). debug=1: identical stacks grouped; debug=2: every thread.</li>
<li><div class=profile-name>allocs: </div> With seconds=N: every allocation of the next N seconds, sampled by bytes with its stack (uprobes; alloc_space by default).</li>
<li><div class=profile-name>heap: </div> Live glibc malloc chunks by type or size class. debug=1: text with totals that match mallinfo2. seconds=N: allocation sites of the next N seconds and what of them is still in use (uprobes, any allocator).</li>
<li><div class=profile-name>profile: </div> Sampled stacks for seconds=N (1 to {max}, default {def}); mode=cpu (default) or wall; rate=Hz ({rmin} to {rmax}, default 99). After you get the profile file, use the go tool pprof command to investigate it.</li>
<li><div class=profile-name>symbol: </div> Symbol names of addresses (GET or POST "0x1+0x2"), as pprof's remote symbolization asks.</li>
<li><div class=profile-name>threads: </div> The same thread dump as goroutine.</li>
</ul>
</p>
</body>
</html>
)",
        fmt::arg("pid", pin.pid()), fmt::arg("who", who), fmt::arg("threads", threads),
        fmt::arg("max", max_seconds), fmt::arg("def", kServeDefaultSeconds),
        fmt::arg("rmin", kServeMinRate), fmt::arg("rmax", kServeMaxRate));
    return r;
}

}  // namespace pmprof::http
