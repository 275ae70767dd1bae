// Protobuf wire format, see src/output/protobuf_wire.h.
#include "output/protobuf_wire.h"

#include <string>

namespace pmprof::wire {

void Writer::varint(uint64_t v) {
    while (v >= 0x80) {
        out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
        v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
}

void Writer::key(int field, WireType type) {
    varint((static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(type));
}

void Writer::uint_field(int field, uint64_t v) {
    if (v == 0) return;
    key(field, kVarint);
    varint(v);
}

void Writer::bytes_field(int field, std::string_view bytes) {
    key(field, kLengthDelimited);
    varint(bytes.size());
    out_.append(bytes);
}

void Writer::packed_uint(int field, const std::vector<uint64_t>& values) {
    if (values.empty()) return;
    Writer payload;
    for (uint64_t v : values) payload.varint(v);
    bytes_field(field, payload.bytes());
}

void Writer::packed_int(int field, const std::vector<int64_t>& values) {
    if (values.empty()) return;
    Writer payload;
    for (int64_t v : values) payload.varint(static_cast<uint64_t>(v));
    bytes_field(field, payload.bytes());
}

namespace {

// Decodes the varint at d[pos], advancing pos; bounds-checked against d only.
Result<uint64_t> decode_varint(std::string_view d, size_t& pos) {
    uint64_t v = 0;
    // A varint is at most 10 bytes; the 10th may only contribute the top bit.
    for (int shift = 0; shift < 70; shift += 7) {
        if (pos >= d.size()) return Error{"truncated varint at byte " + std::to_string(pos)};
        auto b = static_cast<uint8_t>(d[pos++]);
        if (shift == 63 && b > 1) return Error{"varint overflow at byte " + std::to_string(pos)};
        v |= static_cast<uint64_t>(b & 0x7f) << shift;
        if ((b & 0x80) == 0) return v;
    }
    return Error{"varint longer than 10 bytes at byte " + std::to_string(pos)};
}

}  // namespace

Result<uint64_t> Reader::read_varint() { return decode_varint(data_, pos_); }

Result<Field> Reader::next() {
    size_t start = pos_;
    auto key = read_varint();
    if (!key) return key.error();
    Field f;
    uint64_t number = *key >> 3;
    if (number == 0 || number > (uint64_t{1} << 29) - 1) {
        return Error{"invalid field number " + std::to_string(number) + " at byte " +
                     std::to_string(start)};
    }
    f.number = static_cast<int>(number);
    switch (*key & 7) {
    case kVarint: {
        f.type = kVarint;
        auto v = read_varint();
        if (!v) return v.error();
        f.varint = *v;
        return f;
    }
    case kFixed64:
    case kFixed32: {
        size_t n = (*key & 7) == kFixed64 ? 8 : 4;
        f.type = static_cast<WireType>(*key & 7);
        if (data_.size() - pos_ < n) {
            return Error{"truncated fixed field at byte " + std::to_string(start)};
        }
        for (size_t i = 0; i < n; ++i) {
            f.varint |= static_cast<uint64_t>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
        }
        pos_ += n;
        return f;
    }
    case kLengthDelimited: {
        f.type = kLengthDelimited;
        auto len = read_varint();
        if (!len) return len.error();
        if (*len > data_.size() - pos_) {
            return Error{"length " + std::to_string(*len) + " at byte " + std::to_string(start) +
                         " runs past the end (" + std::to_string(data_.size() - pos_) + " left)"};
        }
        f.bytes = data_.substr(pos_, *len);
        pos_ += *len;
        return f;
    }
    default:
        return Error{"unsupported wire type " + std::to_string(*key & 7) + " at byte " +
                     std::to_string(start)};
    }
}

Result<void> append_repeated(const Field& f, std::vector<uint64_t>& out) {
    if (f.type == kVarint) {
        out.push_back(f.varint);
        return {};
    }
    if (f.type != kLengthDelimited) {
        return Error{"field " + std::to_string(f.number) + ": unexpected wire type " +
                     std::to_string(f.type) + " for a repeated integer"};
    }
    size_t pos = 0;
    while (pos < f.bytes.size()) {
        auto v = decode_varint(f.bytes, pos);
        if (!v) return Error{"field " + std::to_string(f.number) + ": packed " + v.error().message};
        out.push_back(*v);
    }
    return {};
}

}  // namespace pmprof::wire
