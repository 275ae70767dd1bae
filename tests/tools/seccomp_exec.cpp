// seccomp_exec SYSCALL[,SYSCALL...] CMD [ARGS...]: runs CMD under a seccomp filter that makes
// each named system call fail with EPERM (or ENOSYS with a "SYSCALL:ENOSYS" entry), as a
// container runtime's profile would. The tests run pmprof under it:
//   seccomp_exec process_vm_readv pmprof stacks PID
//   seccomp_exec ptrace pmprof serve PID
// Known names: process_vm_readv, ptrace, pread64, process_vm_writev.
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace {

long syscall_number(const std::string& name) {
    if (name == "process_vm_readv") return SYS_process_vm_readv;
    if (name == "process_vm_writev") return SYS_process_vm_writev;
    if (name == "ptrace") return SYS_ptrace;
    if (name == "pread64") return SYS_pread64;
    return -1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: seccomp_exec SYSCALL[:ENOSYS][,...] CMD [ARGS...]\n");
        return 64;
    }
    std::vector<sock_filter> prog = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
    };
    std::stringstream list(argv[1]);
    for (std::string item; std::getline(list, item, ',');) {
        int err = EPERM;
        if (auto colon = item.find(':'); colon != std::string::npos) {
            if (item.substr(colon + 1) == "ENOSYS") err = ENOSYS;
            item.resize(colon);
        }
        const long nr = syscall_number(item);
        if (nr < 0) {
            std::fprintf(stderr, "seccomp_exec: unknown system call %s\n", item.c_str());
            return 64;
        }
        prog.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<__u32>(nr), 0, 1));
        prog.push_back(BPF_STMT(BPF_RET | BPF_K,
                                SECCOMP_RET_ERRNO | (static_cast<__u32>(err) & SECCOMP_RET_DATA)));
    }
    prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    sock_fprog fprog{static_cast<unsigned short>(prog.size()), prog.data()};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        std::perror("seccomp_exec: PR_SET_NO_NEW_PRIVS");
        return 70;
    }
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) {
        std::perror("seccomp_exec: SECCOMP_SET_MODE_FILTER");
        return 70;
    }
    execvp(argv[2], argv + 2);
    std::fprintf(stderr, "seccomp_exec: %s: %s\n", argv[2], std::strerror(errno));
    return 127;
}
