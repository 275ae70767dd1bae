// Heap target for reachability and ownership: objects held through every kind of root, and a
// known number of objects of a known type whose last pointer was dropped.
//
// Held (must never show as leaked): hl::Session objects in a global vector, each owning a heap
// std::string (its buffer is "owned by hl::Session"); one hl::StackHeld known only to a worker
// thread's stack; one hl::TlsHeld known only to a thread_local.
// Leaked: kLeaked hl::LeakedWidget objects, each with its own heap std::string (leaked too,
// only pointed to from leaked chunks). The stack region the leaking function used is scrubbed
// before the target blocks, so no stale copy of a leaked pointer stays on a live stack.
//
// argv[1] (optional): MB of extra pointer-rich live heap (hl::Node lists with strings and
// vectors), for measuring the analysis on a large heap.
//
// Ready line: "ready held=N leaked=M string_bytes=B".
#include <pthread.h>
#include <semaphore.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "target_support.h"

namespace hl {

struct Session {
    virtual ~Session() = default;
    std::string name;
    long id = 0;
};
struct LeakedWidget {
    virtual ~LeakedWidget() = default;
    std::string label;
    long value = 42;
};
struct StackHeld {
    virtual ~StackHeld() = default;
    long v = 1;
};
struct TlsHeld {
    virtual ~TlsHeld() = default;
    long v = 2;
};
struct Node {
    virtual ~Node() = default;
    Node* next = nullptr;
    std::string text;
    std::vector<long> values;
};

}  // namespace hl

// External linkage: GCC drops stores to an internal variable that is never read, and then the
// object really is leaked.
thread_local hl::TlsHeld* t_tls_held;

namespace {

constexpr int kHeld = 40;
constexpr int kLeaked = 25;
// Long enough to leave std::string's 15-byte small buffer: a heap buffer of 101 bytes.
constexpr size_t kNameLength = 100;

std::vector<hl::Session*>* g_sessions;
std::vector<hl::Node*>* g_lists;
sem_t g_worker_ready;

TARGET_NOINLINE void make_sessions() {
    g_sessions = new std::vector<hl::Session*>();
    for (int i = 0; i < kHeld; ++i) {
        auto* s = new hl::Session();
        s->name.assign(kNameLength, static_cast<char>('a' + i % 26));
        s->id = i;
        g_sessions->push_back(s);
    }
}

/// Allocates and forgets: after the return nothing but dead stack below sp saw the pointers.
TARGET_NOINLINE void leak_widgets() {
    for (int i = 0; i < kLeaked; ++i) {
        auto* w = new hl::LeakedWidget();
        w->label.assign(kNameLength, 'w');
        target::escape(w);
    }
}

/// Overwrites the stack below the caller's frame, where leak_widgets' frames were, and the
/// caller-saved registers, which may still hold the last widget's or string's address.
TARGET_NOINLINE void scrub_stack() {
    volatile char area[32 * 1024];
    for (size_t i = 0; i < sizeof area; ++i) area[i] = 0;
    target::escape(&area);
    asm volatile("xor %%eax, %%eax\n\txor %%ecx, %%ecx\n\txor %%edx, %%edx\n\t"
                 "xor %%esi, %%esi\n\txor %%edi, %%edi\n\txor %%r8d, %%r8d\n\t"
                 "xor %%r9d, %%r9d\n\txor %%r10d, %%r10d\n\txor %%r11d, %%r11d"
                 :
                 :
                 : "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory");
}

TARGET_NOINLINE void make_lists(long mb) {
    g_lists = new std::vector<hl::Node*>();
    long budget = mb << 20;
    unsigned seed = 12345;
    hl::Node* head = nullptr;
    for (long used = 0; used < budget;) {
        auto* n = new hl::Node();
        seed = seed * 1103515245 + 12345;
        n->text.assign(16 + (seed >> 16) % 400, 'n');
        n->values.resize((seed >> 8) % 32);
        n->next = head;
        head = n;
        used += 64 + static_cast<long>(n->text.size() + n->values.size() * 8 + 48);
        if ((seed >> 4) % 64 == 0) {  // many lists, each anchored in the global vector
            g_lists->push_back(head);
            head = nullptr;
        }
    }
    g_lists->push_back(head);
}

void* worker(void*) {
    target::name_thread("hl-worker");
    t_tls_held = new hl::TlsHeld();
    // The only pointer to this object lives in this frame, which stays on the stack while the
    // thread blocks below.
    auto* held = new hl::StackHeld();
    target::escape(&held);
    sem_post(&g_worker_ready);
    for (;;) {
        pause();
        target::escape(&held);
    }
    return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
    long mb = argc > 1 ? std::atol(argv[1]) : 0;
    sem_init(&g_worker_ready, 0, 0);
    make_sessions();
    if (mb > 0) make_lists(mb);
    pthread_t t;
    pthread_create(&t, nullptr, worker, nullptr);
    sem_wait(&g_worker_ready);
    leak_widgets();
    scrub_stack();
    char line[128];
    int n = std::snprintf(line, sizeof line, "ready held=%d leaked=%d string_bytes=%zu\n", kHeld,
                          kLeaked, kNameLength + 1);
    const char* fd_text = std::getenv("PMPROF_READY_FD");
    ssize_t w = write(fd_text ? std::atoi(fd_text) : 1, line, static_cast<size_t>(n));
    (void)w;
    for (;;) pause();
}
