// Flame graph SVG writer: merges samples into a call tree (root at the bottom, children sorted by
// name as flamegraph.pl does), lays it out once in C++ so the file renders without script, and
// embeds the script that adds hover details, click-to-zoom and search (src/output/svg_script.cpp).
#include "pmprof/output/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "pmprof/profile/index.h"
#include "pmprof/support/markup.h"
#include "pmprof/support/path.h"

namespace pmprof {

extern const char* const kFlameCss;
extern const char* const kFlameScript;

namespace {

constexpr double kFrameHeight = 16;
constexpr double kPad = 10;
constexpr double kTop = 60;          // title, buttons
constexpr double kBottom = 30;       // details line
constexpr double kMinWidth = 0.1;    // px; narrower frames are not drawn (flamegraph.pl's minwidth)
constexpr double kCharWidth = 7.08;  // 12px Verdana, 0.59 em as flamegraph.pl assumes

struct Node {
    std::string_view name, module;
    int64_t value = 0;
    int32_t parent = -1;
    std::vector<uint32_t> children;
};

class Tree {
  public:
    Tree() { nodes_.push_back(Node{"all", {}, 0, -1, {}}); }

    void add(const std::vector<FrameView>& leaf_first, int64_t value) {
        uint32_t cur = 0;
        nodes_[0].value = saturating_add(nodes_[0].value, value);
        for (auto it = leaf_first.rbegin(); it != leaf_first.rend(); ++it) {
            cur = child(cur, *it);
            nodes_[cur].value = saturating_add(nodes_[cur].value, value);
        }
    }
    std::vector<Node>& nodes() { return nodes_; }

  private:
    uint32_t child(uint32_t parent, const FrameView& f) {
        std::string key = fmt::format("{}\x1f{}\x1f{}", parent, f.name, f.module);
        auto [it, fresh] = index_.emplace(std::move(key), static_cast<uint32_t>(nodes_.size()));
        if (fresh) {
            nodes_.push_back(Node{f.name, f.module, 0, static_cast<int32_t>(parent), {}});
            nodes_[parent].children.push_back(it->second);
        }
        return it->second;
    }
    std::vector<Node> nodes_;
    std::unordered_map<std::string, uint32_t> index_;
};

uint32_t fnv1a(std::string_view s) {
    uint32_t h = 2166136261u;
    for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
    return h;
}

// One hue per module, so a library's frames read as one band: modules in mapping order (the
// executable first) get hues spread by the golden ratio over red to blue (0 to 240 degrees),
// starting at orange; lightness varies with the function name so neighbours stay
// distinguishable. Frames without a module are grey. The hues from 240 to 360 are left to the
// search highlight (magenta, hue 300, in svg_script.cpp), so a match is never a module's colour:
// every module hue is at least 60 degrees from it.
class Palette {
  public:
    explicit Palette(const Profile& p) {
        for (const Mapping& m : p.mappings) hue_of(m.filename);
    }
    std::string color(const Node& n) {
        uint32_t hn = fnv1a(n.name);
        if (n.module.empty()) {
            int g = 170 + static_cast<int>(hn % 40);
            return fmt::format("rgb({},{},{})", g, g, g);
        }
        return fmt::format("hsl({},75%,{}%)", hue_of(n.module), 55 + hn % 20);
    }

  private:
    int hue_of(std::string_view module) {
        auto [it, fresh] = hues_.emplace(std::string(module), 0);
        if (fresh) {
            constexpr double kArc = 240;        // red .. blue: the hues modules may have
            constexpr double kStep = 0.381966;  // 1 - 1/golden ratio: no two modules close
            const double t =
                std::fmod(25 / kArc + kStep * static_cast<double>(hues_.size() - 1), 1.0);
            it->second = static_cast<int>(std::lround(kArc * t)) % 360;
        }
        return it->second;
    }
    std::unordered_map<std::string, int> hues_;
};

std::string format_value(int64_t v, const ValueType& t) {
    if (t.unit == "nanoseconds") return fmt::format("{:.2f} ms", static_cast<double>(v) / 1e6);
    if (t.unit == "bytes") return fmt::format("{} bytes", v);
    return fmt::format("{} {}", v, t.type.empty() ? "samples" : t.type);
}

std::string label_text(std::string_view name, double width) {
    auto chars = static_cast<long>(std::floor((width - 6) / kCharWidth));
    if (chars < 3) return {};
    if (static_cast<long>(name.size()) <= chars) return std::string(name);
    return std::string(name.substr(0, static_cast<size_t>(chars - 2))) + "..";
}

struct Layout {
    double width;
    double scale;  // px per unit of value
    double height = 0;
    std::string body;
};

// Pre-order walk without recursion (stacks in untrusted files can be arbitrarily deep).
void lay_out(std::vector<Node>& nodes, const ValueType& type, Palette& palette, Layout& lay) {
    struct Item {
        uint32_t node;
        int32_t parent_index;  // index of the emitted parent frame
        int depth;
        double x;
    };
    for (Node& n : nodes)
        std::sort(n.children.begin(), n.children.end(), [&](uint32_t a, uint32_t b) {
            return std::tie(nodes[a].name, nodes[a].module) <
                   std::tie(nodes[b].name, nodes[b].module);
        });
    const double total = static_cast<double>(std::max<int64_t>(nodes[0].value, 1));
    std::vector<Item> stack{{0, -1, 0, kPad}};
    int emitted = 0;
    while (!stack.empty()) {
        Item it = stack.back();
        stack.pop_back();
        const Node& n = nodes[it.node];
        double w = static_cast<double>(n.value) * lay.scale;
        if (it.node != 0 && w < kMinWidth) continue;
        int index = emitted++;
        std::string name = markup_escape(n.name);
        std::string hover = markup_escape(fmt::format(
            "{}{}{} ({}, {:.2f}%)", n.name, n.module.empty() ? "" : " in ", base_name(n.module),
            format_value(n.value, type), 100.0 * static_cast<double>(n.value) / total));
        double y = lay.height - kBottom - (it.depth + 1) * kFrameHeight;
        lay.body += fmt::format(
            "<g class=\"f\" data-i=\"{}\" data-p=\"{}\" data-d=\"{}\" data-n=\"{}\" data-v=\"{}\" "
            "data-l=\"{}\"><title>{}</title><rect x=\"{:.3f}\" y=\"{:.1f}\" width=\"{:.3f}\" "
            "height=\"{}\" fill=\"{}\" rx=\"2\"/><text x=\"{:.2f}\" y=\"{:.1f}\">{}</text></g>\n",
            index, it.parent_index, it.depth, name, n.value, hover, hover, it.x, y, w,
            kFrameHeight - 1, palette.color(n), it.x + 3, y + kFrameHeight - 4.5,
            markup_escape(label_text(n.name, w)));
        // Children start at the parent's left edge (self time shows as the gap on the right);
        // pushed in reverse so they are emitted left to right.
        size_t first = stack.size();
        double cx = it.x;
        for (uint32_t c : n.children) {
            stack.push_back(Item{c, index, it.depth + 1, cx});
            cx += static_cast<double>(nodes[c].value) * lay.scale;
        }
        std::reverse(stack.begin() + static_cast<std::ptrdiff_t>(first), stack.end());
    }
}

// The depth of the deepest frame wide enough to be drawn; nodes are created after their parent,
// so one forward pass computes depths.
int drawn_depth(const std::vector<Node>& nodes, double scale) {
    std::vector<int> depth(nodes.size(), 0);
    int max_depth = 0;
    for (size_t i = 1; i < nodes.size(); ++i) {
        depth[i] = depth[static_cast<size_t>(nodes[i].parent)] + 1;
        if (static_cast<double>(nodes[i].value) * scale >= kMinWidth)
            max_depth = std::max(max_depth, depth[i]);
    }
    return max_depth;
}

}  // namespace

std::string write_flamegraph_svg(const Profile& profile, const SvgOptions& opt) {
    ProfileIndex index(profile);
    int si = opt.sample_index >= 0 ? opt.sample_index : index.resolve_sample_index({});
    ValueType type = si >= 0 && static_cast<size_t>(si) < profile.sample_types.size()
                         ? profile.sample_types[static_cast<size_t>(si)]
                         : ValueType{"samples", "count"};
    Tree tree;
    std::vector<FrameView> frames;
    for (const Sample& s : profile.samples) {
        int64_t v = sample_value(s, si);
        if (v <= 0) continue;
        frames.clear();
        index.expand(s, frames);
        tree.add(frames, v);
    }
    Layout lay;
    lay.width = std::clamp(opt.width, 200, 20000);
    lay.scale =
        (lay.width - 2 * kPad) / static_cast<double>(std::max<int64_t>(tree.nodes()[0].value, 1));
    lay.height = kTop + kBottom + (drawn_depth(tree.nodes(), lay.scale) + 1) * kFrameHeight;
    Palette palette(profile);
    lay_out(tree.nodes(), type, palette, lay);
    const double height = lay.height;

    std::string out = fmt::format(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n"
        "<svg id=\"pmprof-flame\" version=\"1.1\" xmlns=\"http://www.w3.org/2000/svg\" "
        "width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" data-w=\"{0}\" data-pad=\"{2}\">\n"
        "<style type=\"text/css\"><![CDATA[{3}]]></style>\n"
        "<rect x=\"0\" y=\"0\" width=\"{0}\" height=\"{1}\" fill=\"#f8f8f4\"/>\n"
        "<text id=\"title\" x=\"{4}\" y=\"24\" text-anchor=\"middle\">{5}</text>\n"
        "<text id=\"subtitle\" x=\"{4}\" y=\"44\" text-anchor=\"middle\">{6}</text>\n"
        "<text id=\"unzoom\" class=\"button hidden\" x=\"{2}\" y=\"24\">Reset Zoom</text>\n"
        "<text id=\"search\" class=\"button\" x=\"{7}\" y=\"24\" "
        "text-anchor=\"end\">Search</text>\n"
        "<text id=\"matched\" x=\"{7}\" y=\"{8}\" text-anchor=\"end\"> </text>\n"
        "<text id=\"details\" x=\"{2}\" y=\"{8}\"> </text>\n",
        lay.width, height, kPad, kFlameCss, lay.width / 2, markup_escape(opt.title),
        markup_escape(fmt::format("{}: total {}{}", type.type.empty() ? "samples" : type.type,
                                  format_value(tree.nodes()[0].value, type),
                                  profile.samples.empty() ? " (no samples)" : "")),
        lay.width - kPad, height - 10);
    out += lay.body;
    out += "<script type=\"text/ecmascript\"><![CDATA[";
    out += kFlameScript;
    out += "]]></script>\n</svg>\n";
    return out;
}

}  // namespace pmprof
