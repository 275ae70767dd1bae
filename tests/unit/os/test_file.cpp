// The one temp-file-and-rename (replace_file_atomically) and check_output's decisions, on
// private temporary files only.
#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "../../support/harness.h"
#include "pmprof/os/file.h"

using namespace pmprof;

namespace {

std::string fresh_dir() {
    std::string dir = test::temp_path("outfile-XXXXXX");
    REQUIRE(mkdtemp(dir.data()) != nullptr);
    return dir;
}

size_t entries(const std::string& dir) {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
    return n;
}

}  // namespace

TEST_CASE("replace_file_atomically: all or nothing, no temporary file left", "[unit][output]") {
    const std::string dir = fresh_dir();
    const std::string path = dir + "/f";
    { std::ofstream(path) << "old"; }
    REQUIRE(replace_file_with(path, "new", 0644).ok());
    CHECK(test::slurp(path) == "new");
    CHECK(entries(dir) == 1);

    auto failed =
        replace_file_atomically(path, 0644, [](int fd, const std::string&) -> Result<void> {
            (void)!::write(fd, "partial", 7);
            return Error{"the fill failed", EIO};
        });
    CHECK(!failed.ok());
    CHECK(failed.error().errno_value == EIO);
    CHECK(test::slurp(path) == "new");  // untouched
    CHECK(entries(dir) == 1);           // and the temporary file removed
}

TEST_CASE("check_output: descriptors, links, new files and refusals", "[unit][output]") {
    const std::string dir = fresh_dir();
    CHECK(check_output("-")->kind == OutputPath::Kind::Descriptor);
    CHECK(check_output("/dev/stdout")->fd == 1);
    CHECK(check_output("/dev/fd/2")->fd == 2);
    std::filesystem::create_symlink("/proc/self/fd/1", dir + "/to-stdout");
    CHECK(check_output(dir + "/to-stdout")->fd == 1);

    auto fresh = check_output(dir + "/new.pb.gz");
    REQUIRE(fresh.ok());
    CHECK(fresh->kind == OutputPath::Kind::Regular);
    CHECK(fresh->target == dir + "/new.pb.gz");

    std::filesystem::create_symlink("sub/real", dir + "/dangling");
    std::filesystem::create_directory(dir + "/sub");
    auto link = check_output(dir + "/dangling");
    REQUIRE(link.ok());
    CHECK(link->target == dir + "/sub/real");

    CHECK(check_output("/dev/null")->kind == OutputPath::Kind::Stream);
    auto missing = check_output(dir + "/no/such/file");
    REQUIRE(!missing.ok());
    CHECK(missing.error().message ==
          "cannot write " + dir + "/no/such/file: directory " + dir + "/no/such does not exist");
    auto directory = check_output(dir);
    REQUIRE(!directory.ok());
    CHECK(directory.error().message == "cannot write " + dir + ": it is a directory");
    CHECK(entries(dir) == 3);  // the checks created nothing
}
