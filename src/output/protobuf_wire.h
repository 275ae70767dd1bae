// Minimal protobuf wire format (https://protobuf.dev/programming-guides/encoding/): enough to
// write and read profile.proto. Private to the pprof writer; not a public header.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pmprof/support/error.h"

namespace pmprof::wire {

enum WireType : int {
    kVarint = 0,
    kFixed64 = 1,
    kLengthDelimited = 2,
    kFixed32 = 5,
};

/// Appends fields to a byte string. proto3 semantics: scalar fields equal to 0 are omitted.
class Writer {
  public:
    void varint(uint64_t v);
    void key(int field, WireType type);
    /// uint64 / bool / int64 (two's complement, not zigzag: profile.proto uses int64) fields.
    void uint_field(int field, uint64_t v);
    void int_field(int field, int64_t v) { uint_field(field, static_cast<uint64_t>(v)); }
    /// Always written, even when empty: the string table's first entry must be "".
    void bytes_field(int field, std::string_view bytes);
    /// Packed repeated fields; nothing is written for an empty list.
    void packed_uint(int field, const std::vector<uint64_t>& values);
    void packed_int(int field, const std::vector<int64_t>& values);
    void message(int field, const Writer& sub) { bytes_field(field, sub.bytes()); }

    const std::string& bytes() const { return out_; }
    std::string take() { return std::move(out_); }

  private:
    std::string out_;
};

/// One decoded field. `varint` holds the value of varint and fixed fields; `bytes` the payload of
/// length-delimited ones (a view into the reader's input).
struct Field {
    int number = 0;
    WireType type = kVarint;
    uint64_t varint = 0;
    std::string_view bytes;
};

/// Reads fields from a buffer, bounds-checking everything; never reads past the end.
class Reader {
  public:
    explicit Reader(std::string_view data) : data_(data) {}
    bool done() const { return pos_ >= data_.size(); }
    /// The next field; an Error for truncated or malformed input (groups are rejected).
    Result<Field> next();

  private:
    Result<uint64_t> read_varint();
    std::string_view data_;
    size_t pos_ = 0;
};

/// Appends the values of a repeated scalar field, packed (wire type 2) or not (wire type 0).
Result<void> append_repeated(const Field& f, std::vector<uint64_t>& out);

}  // namespace pmprof::wire
