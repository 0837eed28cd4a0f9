package dev.ravit.core;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;

/** An {@link AssetSource} over a folder (the converter's output folder, a test fixture). */
public final class DirectoryAssetSource implements AssetSource {
    private final Path folder;

    public DirectoryAssetSource(Path folder) {
        this.folder = Objects.requireNonNull(folder, "folder");
    }

    public Path folder() {
        return folder;
    }

    private Path resolve(String name) {
        Path p = folder.resolve(name).normalize();
        if (!p.startsWith(folder.normalize())) {
            throw new IllegalArgumentException("Asset name '" + name + "' leaves the folder " + folder + ".");
        }
        return p;
    }

    @Override
    public boolean exists(String name) {
        return Files.isRegularFile(resolve(name));
    }

    @Override
    public InputStream open(String name) throws IOException {
        return Files.newInputStream(resolve(name));
    }

    @Override
    public long size(String name) throws IOException {
        return Files.size(resolve(name));
    }

    @Override
    public String describe(String name) {
        return resolve(name).toString();
    }

    @Override
    public String toString() {
        return "DirectoryAssetSource(" + folder + ")";
    }
}
