// image.cpp — see image.h.
#include "image.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>

namespace vigil_emu {

namespace {

// ---- PTX ------------------------------------------------------------------------------

std::string strip_comments(const char* s) {
    std::string out;
    for (const char* p = s; *p;) {
        if (p[0] == '/' && p[1] == '/') {
            while (*p && *p != '\n') ++p;
        } else if (p[0] == '/' && p[1] == '*') {
            p += 2;
            while (*p && !(p[0] == '*' && p[1] == '/')) ++p;
            if (*p) p += 2;
        } else if (*p == '"') {
            out += *p++;
            while (*p && *p != '"') out += *p++;
            if (*p) out += *p++;
        } else {
            out += *p++;
        }
    }
    return out;
}

unsigned ptx_type_size(const std::string& t) {
    static const std::map<std::string, unsigned> sizes = {
        {".b8", 1},  {".u8", 1},  {".s8", 1},  {".b16", 2}, {".u16", 2}, {".s16", 2},
        {".f16", 2}, {".bf16", 2}, {".b32", 4}, {".u32", 4}, {".s32", 4}, {".f32", 4},
        {".f16x2", 4}, {".bf16x2", 4}, {".b64", 8}, {".u64", 8}, {".s64", 8}, {".f64", 8},
        {".b128", 16}};
    auto it = sizes.find(t);
    return it == sizes.end() ? 0 : it->second;
}

struct Lexer {
    const std::string& s;
    std::size_t i = 0;
    explicit Lexer(const std::string& src) : s(src) {}
    void ws() {
        while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    }
    // identifiers, directives (.foo), numbers; punctuation as single characters
    std::string next() {
        ws();
        if (i >= s.size()) return "";
        const std::size_t b = i;
        auto word = [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '$' || c == '%';
        };
        if (word(s[i])) {
            while (i < s.size() && word(s[i])) ++i;
        } else {
            ++i;
        }
        return s.substr(b, i - b);
    }
    std::string peek() {
        std::size_t save = i;
        std::string t = next();
        i = save;
        return t;
    }
};

/// After a declaration's name: the element count of an optional `[N]` (1 without).
unsigned array_count(Lexer& lx) {
    if (lx.peek() != "[") return 1;
    lx.next();
    const unsigned n = static_cast<unsigned>(std::strtoul(lx.next().c_str(), nullptr, 10));
    lx.next();  // ]
    return n;
}

bool parse_ptx(const char* text, Image* out, std::string* why) {
    const std::string src = strip_comments(text);
    Lexer lx(src);
    out->cubin = false;
    bool have_version = false, have_target = false;
    for (std::string t = lx.next(); !t.empty(); t = lx.next()) {
        if (t == ".version") {
            std::string v = lx.next();
            if (std::sscanf(v.c_str(), "%u.%u", &out->ptx_major, &out->ptx_minor) != 2) {
                *why = "malformed .version '" + v + "'";
                return false;
            }
            have_version = true;
        } else if (t == ".target") {
            std::string v = lx.next();
            unsigned sm = 0;
            if (std::sscanf(v.c_str(), "sm_%u", &sm) != 1) {
                *why = "unsupported .target '" + v + "'";
                return false;
            }
            out->sm = sm;
            have_target = true;
        } else if (t == ".entry") {
            ImageKernel k;
            k.name = lx.next();
            if (lx.next() != "(") {
                *why = "entry " + k.name + ": expected a parameter list";
                return false;
            }
            // .param <directives> name[N]? , ...
            while (true) {
                std::string p = lx.next();
                if (p == ")") break;
                if (p == ",") continue;
                if (p != ".param") {
                    *why = "entry " + k.name + ": unexpected '" + p + "' in the parameter list";
                    return false;
                }
                unsigned elem = 0, count = 1;
                for (std::string d = lx.next(); !d.empty(); d = lx.next()) {
                    if (d == ".align") {
                        lx.next();
                    } else if (d == ".ptr" || d == ".global" || d == ".const" || d == ".shared" ||
                               d == ".local") {
                        // pointer attributes
                    } else if (d[0] == '.') {
                        elem = ptx_type_size(d);
                    } else {
                        count = array_count(lx);  // after the parameter's name
                        break;
                    }
                }
                if (elem == 0) {
                    *why = "entry " + k.name + ": parameter of unknown type";
                    return false;
                }
                k.params.push_back(ImageParam{elem * count, -1});
            }
            // performance directives until the body
            for (std::string d = lx.next(); !d.empty() && d != "{"; d = lx.next()) {
                if (d == ".maxntid" || d == ".reqntid") {
                    for (int j = 0; j < 3; ++j) {
                        k.maxntid[j] = static_cast<unsigned>(std::strtoul(lx.next().c_str(), nullptr, 10));
                        if (lx.peek() == ",") lx.next();
                        else break;
                    }
                    for (unsigned& m : k.maxntid)
                        if (m == 0) m = 1;
                }
            }
            // body: count braces; collect .shared arrays and barriers
            int depth = 1;
            while (depth > 0 && lx.i < src.size()) {
                std::string b = lx.next();
                if (b.empty()) break;
                if (b == "{") ++depth;
                else if (b == "}") --depth;
                else if (b == ".shared") {
                    unsigned align = 1, elem = 0, count = 1;
                    for (std::string d = lx.next(); !d.empty(); d = lx.next()) {
                        if (d == ".align") {
                            align = static_cast<unsigned>(std::strtoul(lx.next().c_str(), nullptr, 10));
                        } else if (d[0] == '.') {
                            elem = ptx_type_size(d);
                        } else {
                            count = array_count(lx);  // after the array's name
                            break;
                        }
                    }
                    if (align == 0) align = 1;
                    k.static_smem = (k.static_smem + align - 1) / align * align + elem * count;
                } else if (b.rfind("bar.sync", 0) == 0 || b.rfind("barrier.sync", 0) == 0 ||
                           b.rfind("bar.red", 0) == 0 || b.rfind("barrier.cta", 0) == 0) {
                    k.barriers = 1;
                }
            }
            out->kernels.push_back(std::move(k));
        }
    }
    if (!have_version || !have_target) {
        *why = "PTX without .version/.target";
        return false;
    }
    return true;
}

// ---- CUBIN (ELF64, EM_CUDA) -------------------------------------------------------------

constexpr uint16_t kEmCuda = 190;
constexpr unsigned kStoCudaEntry = 0x10;
// .nv.info attribute formats and ids
constexpr uint8_t kFmtNval = 1, kFmtBval = 2, kFmtHval = 3, kFmtSval = 4;
constexpr uint8_t kAttrMaxThreads = 0x05, kAttrKparamInfo = 0x17, kAttrCbankParamSize = 0x19;

template <typename T>
bool rd(const unsigned char* img, std::size_t size, std::size_t off, T* v) {
    if (off > size || sizeof(T) > size - off) return false;
    std::memcpy(v, img + off, sizeof(T));
    return true;
}

struct Shdr {
    uint32_t name, type;
    uint64_t flags, addr, offset, size;
    uint32_t link, info;
    uint64_t align, entsize;
};

bool parse_cubin(const unsigned char* img, Image* out, std::string* why) {
    out->cubin = true;
    if (img[4] != 2 || img[5] != 1) {
        *why = "not a 64-bit little-endian ELF";
        return false;
    }
    uint16_t machine, shentsize, shnum, shstrndx;
    uint32_t flags;
    uint64_t shoff;
    std::memcpy(&machine, img + 18, 2);
    std::memcpy(&shoff, img + 40, 8);
    std::memcpy(&flags, img + 48, 4);
    std::memcpy(&shentsize, img + 58, 2);
    std::memcpy(&shnum, img + 60, 2);
    std::memcpy(&shstrndx, img + 62, 2);
    if (machine != kEmCuda) {
        *why = "ELF for machine " + std::to_string(machine) + ", not EM_CUDA (190)";
        return false;
    }
    if (shentsize != 64 || shnum == 0 || shstrndx >= shnum) {
        *why = "malformed ELF section table";
        return false;
    }
    // The image's size: it ends at the section table or at the last section's data.
    std::size_t size = shoff + std::size_t(shnum) * shentsize;
    std::vector<Shdr> sh(shnum);
    for (unsigned i = 0; i < shnum; ++i) {
        std::memcpy(&sh[i], img + shoff + std::size_t(i) * shentsize, sizeof(Shdr));
        if (sh[i].type != 8 /* SHT_NOBITS */) size = std::max<std::size_t>(size, sh[i].offset + sh[i].size);
    }
    out->sm = flags & 0xff;
    if (out->sm == 0) out->sm = (flags >> 16) & 0xff;
    auto sec_name = [&](unsigned i) -> std::string {
        const Shdr& s = sh[shstrndx];
        std::size_t off = s.offset + sh[i].name;
        if (off >= size) return "";
        const char* n = reinterpret_cast<const char*>(img + off);
        return std::string(n, strnlen(n, size - off));
    };
    std::map<std::string, unsigned> by_name;
    unsigned symtab = 0;
    for (unsigned i = 0; i < shnum; ++i) {
        by_name[sec_name(i)] = i;
        if (sh[i].type == 2 /* SHT_SYMTAB */) symtab = i;
    }
    if (!symtab) {
        *why = "CUBIN without a symbol table";
        return false;
    }
    const Shdr& st = sh[symtab];
    const Shdr& strs = sh[st.link < shnum ? st.link : 0];
    for (uint64_t off = st.offset; off + 24 <= st.offset + st.size; off += 24) {
        uint32_t name;
        uint8_t info, other;
        uint16_t shndx;
        if (!rd(img, size, off, &name) || !rd(img, size, off + 4, &info) || !rd(img, size, off + 5, &other) ||
            !rd(img, size, off + 6, &shndx)) {
            *why = "truncated symbol table";
            return false;
        }
        const bool func = (info & 0xf) == 2, global = (info >> 4) == 1;
        if (!func || !global || !(other & kStoCudaEntry)) continue;
        if (strs.offset + name >= size) continue;
        const char* n = reinterpret_cast<const char*>(img + strs.offset + name);
        ImageKernel k;
        k.name.assign(n, strnlen(n, size - (strs.offset + name)));
        if (shndx < shnum) {
            k.regs = sh[shndx].info >> 24;
            k.barriers = static_cast<unsigned>((sh[shndx].flags >> 20) & 0x7f);
        }
        auto shared = by_name.find(".nv.shared." + k.name);
        if (shared != by_name.end()) k.static_smem = static_cast<unsigned>(sh[shared->second].size);
        auto nvinfo = by_name.find(".nv.info." + k.name);
        if (nvinfo != by_name.end()) {
            const Shdr& s = sh[nvinfo->second];
            std::map<unsigned, ImageParam> params;  // by ordinal
            unsigned cbank = 0;
            for (uint64_t p = s.offset; p + 4 <= s.offset + s.size;) {
                uint8_t fmt = img[p], attr = img[p + 1];
                uint16_t len = 0;
                std::memcpy(&len, img + p + 2, 2);
                if (fmt == kFmtSval) {
                    const unsigned char* v = img + p + 4;
                    if (attr == kAttrKparamInfo && len >= 12) {
                        uint16_t ordinal, offset;
                        uint32_t bits;
                        std::memcpy(&ordinal, v + 4, 2);
                        std::memcpy(&offset, v + 6, 2);
                        std::memcpy(&bits, v + 8, 4);
                        params[ordinal] = ImageParam{(bits >> 18) & 0x3fff, offset};
                    } else if (attr == kAttrMaxThreads && len >= 12) {
                        std::memcpy(k.maxntid, v, 12);
                    }
                    p += 4 + len;
                } else if (fmt == kFmtHval) {
                    if (attr == kAttrCbankParamSize) cbank = len;
                    p += 4;
                } else if (fmt == kFmtNval || fmt == kFmtBval) {
                    p += 4;
                } else {
                    *why = "unknown .nv.info attribute format in " + k.name;
                    return false;
                }
            }
            unsigned expect = 0;
            for (auto& [ord, prm] : params) {
                if (ord != expect++) {
                    *why = "kernel " + k.name + ": parameter ordinals are not contiguous";
                    return false;
                }
                k.params.push_back(prm);
            }
            if (!params.empty()) {
                const ImageParam& last = k.params.back();
                if (cbank && static_cast<unsigned>(last.offset) + last.size > cbank) {
                    *why = "kernel " + k.name + ": parameters exceed the parameter bank";
                    return false;
                }
            }
        }
        out->kernels.push_back(std::move(k));
    }
    return true;
}

}  // namespace

ImageError parse_image(const void* data, Image* out, std::string* why) {
    if (!data) {
        *why = "null image";
        return ImageError::NotAnImage;
    }
    const auto* img = static_cast<const unsigned char*>(data);
    *out = Image{};
    if (std::memcmp(img, "\x7f" "ELF", 4) == 0) {
        if (!parse_cubin(img, out, why)) return ImageError::Malformed;
        return ImageError::None;
    }
    const char* text = static_cast<const char*>(data);
    if (!std::strstr(text, ".version") || !std::strstr(text, ".target")) {
        *why = "neither a CUBIN (ELF) nor PTX text (no .version/.target); fatbinaries are not supported";
        return ImageError::NotAnImage;
    }
    if (!parse_ptx(text, out, why)) return ImageError::Malformed;
    return ImageError::None;
}

}  // namespace vigil_emu
